-- At-risk customers for the win-back newsletter: Mailchimp audience members tagged "at-risk".
-- The sync sends only rows whose email_marketing_consent is true; the flag is carried here so
-- an analyst reading the model sees who will be skipped and why.

with

segment as (

    select * from {{ ref('at_risk_customers') }}

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
        segment.rfm_score,
        customers.email_marketing_consent

    from segment
    inner join customers on customers.customer_id = segment.customer_id
    where segment.email is not null

)

select * from final
