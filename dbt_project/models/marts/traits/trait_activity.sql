-- Web/app activity traits. A session is a run of a customer's events with no gap over 30 minutes
-- (the convention of web analytics tools); windows end at cdp_now() so tests can pin "now".
{%- set session_gap_minutes = 30 %}

with

spine as (

    select customer_id from {{ ref('int_profiles__customer_spine') }}

),

web_events as (

    select customer_id, event_id, event_type, occurred_at
    from {{ ref('customer_events') }}
    where source = 'events'
        and customer_id is not null
        and occurred_at <= {{ cdp_now() }}

),

gaps as (

    select
        *,
        lag(occurred_at) over (partition by customer_id order by occurred_at, event_id)
            as previous_at

    from web_events

),

sessions as (

    -- a session starts where the previous event is missing or too long ago
    select customer_id, occurred_at as session_started_at
    from gaps
    where previous_at is null
        or previous_at < {{ dbt.dateadd('minute', -session_gap_minutes, 'occurred_at') }}

),

window_start as (

    select {{ dbt.dateadd('day', -30, cdp_now()) }} as since

),

events_30d as (

    select
        customer_id,
        sum(case when event_type in ('page', 'screen') then 1 else 0 end) as page_views_30d,
        count(*) as events_30d

    from web_events
    where occurred_at > (select since from window_start)
    group by customer_id

),

sessions_30d as (

    select customer_id, count(*) as sessions_30d
    from sessions
    where session_started_at > (select since from window_start)
    group by customer_id

),

last_seen as (

    select customer_id, max(occurred_at) as last_active_at
    from web_events
    group by customer_id

),

final as (

    select
        spine.customer_id,
        coalesce(s.sessions_30d, 0) as sessions_30d,
        coalesce(e.page_views_30d, 0) as page_views_30d,
        coalesce(e.events_30d, 0) as events_30d,
        l.last_active_at

    from spine
    left join sessions_30d as s on s.customer_id = spine.customer_id
    left join events_30d as e on e.customer_id = spine.customer_id
    left join last_seen as l on l.customer_id = spine.customer_id

)

select * from final
