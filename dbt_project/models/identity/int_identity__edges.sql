{{
    config(
        materialized='incremental',
        unique_key=['node_a', 'node_b'],
        incremental_strategy='delete+insert',
    )
}}
-- The edges of the identity graph: two identifiers seen on the same source record (an alias event
-- carries previousId and userId on one record, so it links them too). Oriented so node_a is the
-- stronger identifier; each edge keeps one example record so a link can always be explained.
-- Incremental runs recompute every edge touching an identifier of a record loaded since the last
-- run, over all the records that hold it (so first_loaded_at, the load that first linked the pair,
-- is exact).
with

{% if is_incremental() %}
touched as (

    select distinct node_id
    from {{ ref('int_identity__record_nodes') }}
    where loaded_at > {{ identity_watermark(this, 'max_loaded_at') }}

),
{% endif %}

record_nodes as (

    select record_id, record_model, record_key, seen_at, loaded_at, node_id, id_type, priority
    from {{ ref('int_identity__record_nodes') }}
    {%- if is_incremental() %}
    where record_id in (
        select rn.record_id
        from {{ ref('int_identity__record_nodes') }} as rn
        inner join touched as t on t.node_id = rn.node_id
    )
    {%- endif %}

),

pairs as (

    select
        a.node_id as node_a,
        b.node_id as node_b,
        a.id_type as type_a,
        b.id_type as type_b,
        a.priority as priority_a,
        b.priority as priority_b,
        a.record_model,
        a.record_key,
        a.seen_at,
        greatest(a.loaded_at, b.loaded_at) as loaded_at
    from record_nodes as a
    inner join record_nodes as b
        on a.record_id = b.record_id
        and (a.priority < b.priority or (a.priority = b.priority and a.node_id < b.node_id))
    {%- if is_incremental() %}
    where a.node_id in (select node_id from touched) or b.node_id in (select node_id from touched)
    {%- endif %}

),

final as (

    select
        node_a,
        node_b,
        min(type_a) as type_a,
        min(type_b) as type_b,
        min(priority_a) as priority_a,
        min(priority_b) as priority_b,
        count(*) as record_count,
        min(seen_at) as first_seen_at,
        min(record_model || '|' || record_key) as example_record,
        max(loaded_at) as max_loaded_at,
        -- when the link first existed: a run only re-stitches components a new link touches
        min(loaded_at) as first_loaded_at
    from pairs
    group by node_a, node_b

)

select * from final
