-- Engagement level, one word marketing can filter on:
--   high     3+ sessions in the last 30 days
--   medium   1-2 sessions in the last 30 days
--   low      active in the last 90 days, not in the last 30
--   dormant  active before, not in the last 90 days
--   none     never seen on the web or in the app
with

activity as (

    select * from {{ ref('trait_activity') }}

),

final as (

    select
        customer_id,
        case
            when sessions_30d >= 3 then 'high'
            when sessions_30d >= 1 then 'medium'
            when last_active_at > {{ dbt.dateadd('day', -90, cdp_now()) }} then 'low'
            when last_active_at is not null then 'dormant'
            else 'none'
        end as engagement_level

    from activity

)

select * from final
