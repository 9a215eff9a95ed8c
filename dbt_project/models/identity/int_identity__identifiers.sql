{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        incremental_strategy='delete+insert',
    )
}}
-- The nodes of the identity graph: one row per normalized identifier, with when and where it was
-- seen. first_seen_at orders anchors, so it is the earliest first_seen_at of any record holding it.
-- Incremental runs re-aggregate only the identifiers on records loaded since the last run.
-- shape_loaded_at is the load that created the identifier or last moved its first_seen_at (which
-- orders anchors and per-type limits): a run re-stitches the components of those identifiers and
-- of new links only; a later sighting alone changes last_seen_at, sources and record_count.
with

record_nodes as (

    select * from {{ ref('int_identity__record_nodes') }}
    {%- if is_incremental() %}
    where node_id in (
        select node_id from {{ ref('int_identity__record_nodes') }}
        where loaded_at > {{ identity_watermark(this, 'max_loaded_at') }}
    )
    {%- endif %}

),

-- per (identifier, source) first: far fewer rows to aggregate the source lists from; only numbers
-- and timestamps here, the type and value come once per identifier from the normalized values
per_source as (

    select
        node_id,
        source,
        min(coalesce(first_seen_at, seen_at)) as first_seen_at,
        max(seen_at) as last_seen_at,
        max(loaded_at) as max_loaded_at,
        count(*) as record_count
    from record_nodes
    group by node_id, source

),

per_node as (

    select
        node_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        {{ dbt.listagg('source', "','", 'order by source') }} as sources,
        sum(record_count) as record_count,
        max(max_loaded_at) as max_loaded_at
    from per_source
    group by node_id

),

attributes as (

    select node_id, min(id_type) as id_type, min(id_value) as id_value
    from {{ ref('int_identity__normalized_values') }}
    where node_id in (select node_id from per_node)
    group by node_id

),

{% if is_incremental() %}
-- the previous rows of these identifiers only (a semi-join probing the table with the small set)
previous as materialized (

    select p.node_id, p.first_seen_at, p.shape_loaded_at
    from {{ this }} as p
    where p.node_id in (select node_id from per_node)

),
{% endif %}

final as (

    select
        n.node_id,
        a.id_type,
        a.id_value,
        {{ identity_priority('a.id_type') }} as priority,
        {{ identity_max_per_customer('a.id_type') }} as max_per_customer,
        n.first_seen_at,
        n.last_seen_at,
        n.sources,
        n.record_count,
        n.max_loaded_at,
        {%- if is_incremental() %}
        case
            when p.first_seen_at is not distinct from n.first_seen_at and p.node_id is not null
                then p.shape_loaded_at
            else n.max_loaded_at
        end as shape_loaded_at
        {%- else %}
        n.max_loaded_at as shape_loaded_at
        {%- endif %}
    from per_node as n
    inner join attributes as a on a.node_id = n.node_id
    {%- if is_incremental() %}
    left join previous as p on p.node_id = n.node_id
    {%- endif %}

)

select * from final
