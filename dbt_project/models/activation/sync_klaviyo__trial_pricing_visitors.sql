-- Trial users who looked at pricing recently, into a Klaviyo list for the upgrade flow
-- (consent-gated on email_marketing by the sync, like every email destination).

select
    segment.customer_id,
    lower(segment.email) as email,
    segment.first_name,
    segment.last_name,
    segment.last_pricing_view_at,
    customers.plan

from {{ ref('trial_users_visited_pricing') }} as segment
inner join {{ ref('customers') }} as customers on customers.customer_id = segment.customer_id
where segment.email is not null
