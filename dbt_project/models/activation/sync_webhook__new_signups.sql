-- New sign-ups of the week, posted to the onboarding service's webhook (keyed by customer_id:
-- the receiver creates the onboarding journey, so a sign-up without an email still counts).

with

segment as (

    select * from {{ ref('new_signups_this_week') }}

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
        segment.signed_up_at

    from segment
    inner join customers on customers.customer_id = segment.customer_id

)

select * from final
