-- New sign-ups of the week for the onboarding service's webhook, keyed by customer_id: the
-- receiver starts the onboarding journey, so a sign-up without an email still counts.

select
    segment.customer_id,
    lower(segment.email) as email,
    segment.first_name,
    segment.last_name,
    segment.signed_up_at,
    customers.plan

from {{ ref('new_signups_this_week') }} as segment
inner join {{ ref('customers') }} as customers on customers.customer_id = segment.customer_id
