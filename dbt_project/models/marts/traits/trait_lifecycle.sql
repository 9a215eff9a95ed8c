-- When the customer signed up for the product (their earliest product account) and how long ago.
with

spine as (

    select customer_id from {{ ref('int_profiles__customer_spine') }}

),

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}
    where record_model = 'stg_app__users'

),

signups as (

    select rc.customer_id, min(u.created_at) as signed_up_at
    from {{ ref('stg_app__users') }} as u
    inner join record_customers as rc on rc.record_key = u.user_id
    group by rc.customer_id

),

final as (

    select
        spine.customer_id,
        s.signed_up_at,
        {{ dbt.datediff('s.signed_up_at', cdp_now(), 'day') }} as days_since_signup

    from spine
    left join signups as s on s.customer_id = spine.customer_id

)

select * from final
