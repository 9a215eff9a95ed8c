-- Every spell of every customer in every segment: entered_at when a build first saw them in it,
-- exited_at when a later build no longer did (null while they are still in). This answers "who
-- left since the last sync" and "how big was the segment on day X"; it is never rebuilt from
-- scratch, as a full refresh would erase the past.
{{ config(
    materialized='incremental',
    unique_key=['segment', 'customer_id', 'entered_at'],
    incremental_strategy='delete+insert',
    full_refresh=false,
) }}

with

current_members as (

    select * from {{ ref('int_segments__members') }}

),

evaluation as (

    select {{ cdp_now() }} as evaluated_at

),

-- spells still open before this build; none on the very first build
open_spells as (

    {% if is_incremental() %}
    select segment, customer_id, entered_at
    from {{ this }}
    where exited_at is null
    {% else %}
    select
        cast(null as varchar) as segment,
        cast(null as varchar) as customer_id,
        cast(null as timestamp) as entered_at
    where 1 = 0
    {% endif %}

),

exits as (

    select
        o.segment,
        o.customer_id,
        o.entered_at,
        e.evaluated_at as exited_at

    from open_spells as o
    cross join evaluation as e
    left join current_members as c
        on c.segment = o.segment and c.customer_id = o.customer_id
    where c.customer_id is null

),

entries as (

    select
        c.segment,
        c.customer_id,
        e.evaluated_at as entered_at,
        cast(null as timestamp) as exited_at

    from current_members as c
    cross join evaluation as e
    left join open_spells as o
        on o.segment = c.segment and o.customer_id = c.customer_id
    where o.customer_id is null

),

final as (

    select * from exits
    union all
    select * from entries

)

select * from final
