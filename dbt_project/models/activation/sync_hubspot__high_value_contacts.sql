-- High-value customers as HubSpot contacts, kept in a static list (mirror: leavers leave the list).
-- One row per email: HubSpot upserts contacts by email, so a customer without one cannot be sent.

with

segment as (

    select * from {{ ref('high_value_customers') }}

),

customers as (

    select * from {{ ref('customers') }}

),

final as (

    select
        segment.customer_id,
        lower(segment.email) as email,
        segment.first_name,
        segment.last_name,
        segment.phone,
        customers.company_name,
        round(segment.lifetime_value, 2) as lifetime_value,
        segment.order_count

    from segment
    inner join customers on customers.customer_id = segment.customer_id
    where segment.email is not null

)

select * from final
