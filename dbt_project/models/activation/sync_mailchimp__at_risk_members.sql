-- At-risk customers for the win-back newsletter: Mailchimp audience members tagged "at-risk".
-- The sync sends only rows whose email_marketing_consent is true; the flag is carried here so
-- an analyst reading the model sees who will be skipped.

select
    segment.customer_id,
    lower(segment.email) as email,
    segment.first_name,
    segment.last_name,
    segment.rfm_score,
    customers.email_marketing_consent

from {{ ref('at_risk_customers') }} as segment
inner join {{ ref('customers') }} as customers on customers.customer_id = segment.customer_id
where segment.email is not null
