-- High-value customers as HubSpot contacts, kept in a static list (mirror: leavers leave the list).
-- HubSpot upserts contacts by email, so a customer without one cannot be sent.

select
    segment.customer_id,
    lower(segment.email) as email,
    segment.first_name,
    segment.last_name,
    segment.phone,
    customers.company_name,
    round(segment.lifetime_value, 2) as lifetime_value,
    segment.order_count

from {{ ref('high_value_customers') }} as segment
inner join {{ ref('customers') }} as customers on customers.customer_id = segment.customer_id
where segment.email is not null
