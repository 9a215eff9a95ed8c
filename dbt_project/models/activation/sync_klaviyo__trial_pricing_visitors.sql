-- Trial users who looked at pricing recently, into a Klaviyo list for the upgrade flow.
-- Consent-gated on email_marketing like every email destination.

with

segment as (

    select * from {{ ref('trial_users_visited_pricing') }}

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
        customers.plan,
        customers.email_marketing_consent

    from segment
    inner join customers on customers.customer_id = segment.customer_id
    where segment.email is not null

)

select * from final
