{{
    config(
        materialized='incremental',
        unique_key=['node_a', 'node_b'],
        incremental_strategy='delete+insert',
    )
}}
-- The edges of the identity graph: two identifiers seen on the same source record (an alias event
-- carries previousId and userId on one record, so it links them too). Oriented so node_a is the
-- stronger identifier; each edge keeps one example record (its record_id: the smallest of the records
-- carrying the link) so a link can always be explained.
-- Incremental runs recompute the edges the records loaded since the last run carry, over all the
-- records holding them (so record_count and first_loaded_at, the load that first linked the pair,
-- are exact); no other edge changed.
with

{% if is_incremental() %}
-- the links the records loaded since the last run carry: only these edges can change (a record
-- adds to the links it holds and to no other)
new_pairs as materialized (

    select distinct a.node_id as node_a, b.node_id as node_b
    from {{ ref('int_identity__record_nodes') }} as a
    inner join {{ ref('int_identity__record_nodes') }} as b
        on a.record_id = b.record_id
        and (a.priority < b.priority or (a.priority = b.priority and a.node_id < b.node_id))
    where a.loaded_at > {{ identity_watermark(this, 'max_loaded_at') }}
        and b.loaded_at > {{ identity_watermark(this, 'max_loaded_at') }}

),
{% endif %}

-- incremental: every record holding an end of such a link, to recount the links over all records
record_nodes as {% if is_incremental() %}materialized {% endif %}(

    select record_id, seen_at, loaded_at, node_id, id_type, priority
    from {{ ref('int_identity__record_nodes') }}
    {%- if is_incremental() %}
    where node_id in (select node_a from new_pairs union select node_b from new_pairs)
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
        a.record_id,
        a.seen_at,
        greatest(a.loaded_at, b.loaded_at) as loaded_at
    from record_nodes as a
    inner join record_nodes as b
        on a.record_id = b.record_id
        and (a.priority < b.priority or (a.priority = b.priority and a.node_id < b.node_id))
    {%- if is_incremental() %}
    where exists (
        select 1 from new_pairs as n where n.node_a = a.node_id and n.node_b = b.node_id
    )
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
        min(record_id) as example_record_id,
        max(loaded_at) as max_loaded_at,
        -- when the link first existed: a run only re-stitches components a new link touches
        min(loaded_at) as first_loaded_at
    from pairs
    group by node_a, node_b

)

select * from final
