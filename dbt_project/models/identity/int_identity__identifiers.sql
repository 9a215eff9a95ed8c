{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        pre_hook="{{ identity_rebuild_reset() }}",
        incremental_strategy='delete+insert',
    )
}}
{%- set incremental_run = identity_incremental() %}
-- The nodes of the identity graph: one row per normalized identifier, with when and where it was
-- seen. first_seen_at orders anchors, so it is the earliest first_seen_at of any record holding it.
-- shape_loaded_at is the load that created the identifier or last moved its first_seen_at (which
-- orders anchors and per-type limits): a run re-stitches the components of those identifiers and
-- of new links only; a later sighting alone changes last_seen_at, sources and record_count.
-- Incremental runs redo the identifiers on records loaded since the last run. Where the engine can
-- merge source lists (identity_merge_lists), an identifier's row is its previous row plus the new
-- records (counts add, first and last sightings take the earlier and later, sources merge), so a
-- run reads only the new rows of record_nodes; identifiers on a reloaded record (is_reload: its
-- earlier version is already counted) are re-aggregated over all their records instead, as every
-- identifier is without the merge.
{%- set watermark = identity_watermark(this, 'max_loaded_at') if incremental_run else '' %}
{%- set merge = incremental_run and identity_merge_lists('a', 'b') != '' %}
{%- set reloads = identity_has_reloads(watermark) if merge else false %}
with

{% if incremental_run %}
new_rows as (

    select * from {{ ref('int_identity__record_nodes') }}
    where loaded_at > {{ watermark }}

),
{% endif %}

-- the records to aggregate: all of them (a full build), the new ones (merged), or every record of
-- an identifier the new records hold (re-aggregated)
record_nodes as (

    {%- if not incremental_run %}
    select * from {{ ref('int_identity__record_nodes') }}
    {%- elif merge %}
    select *, false as redone from new_rows
    {%- if reloads %}
    where node_id not in (select node_id from new_rows where is_reload)
    union all
    select *, true as redone from {{ ref('int_identity__record_nodes') }}
    where node_id in (select node_id from new_rows where is_reload)
    {%- endif %}
    {%- else %}
    select * from {{ ref('int_identity__record_nodes') }}
    where node_id in (select node_id from new_rows)
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
        {%- if merge %},
        bool_or(redone) as redone
        {%- endif %}
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
        {%- if merge %},
        bool_or(redone) as redone
        {%- endif %}
    from per_source
    group by node_id

),

attributes as (

    select node_id, min(id_type) as id_type, min(id_value) as id_value
    from {{ ref('int_identity__normalized_values') }}
    where node_id in (select node_id from per_node)
    group by node_id

),

{% if incremental_run %}
-- the previous rows of these identifiers only (a semi-join probing the table with the small set)
previous as materialized (

    select
        p.node_id,
        p.first_seen_at,
        p.last_seen_at,
        p.sources,
        p.record_count,
        p.max_loaded_at,
        p.shape_loaded_at
    from {{ this }} as p
    where p.node_id in (select node_id from per_node)

),
{% endif %}

{% if merge %}
-- the new records' figures merged into the previous row (re-aggregated identifiers replace it)
merged as (

    select
        n.node_id,
        case when n.redone or p.node_id is null then n.first_seen_at
            else {{ identity_least('p.first_seen_at', 'n.first_seen_at') }} end as first_seen_at,
        case when n.redone or p.node_id is null then n.last_seen_at
            else {{ identity_greatest('p.last_seen_at', 'n.last_seen_at') }} end as last_seen_at,
        case when n.redone or p.node_id is null then n.sources
            else {{ identity_merge_lists('p.sources', 'n.sources') }} end as sources,
        case when n.redone or p.node_id is null then n.record_count
            else p.record_count + n.record_count end as record_count,
        case when n.redone or p.node_id is null then n.max_loaded_at
            else {{ identity_greatest('p.max_loaded_at', 'n.max_loaded_at') }} end as max_loaded_at
    from per_node as n
    left join previous as p on p.node_id = n.node_id

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
        {%- if incremental_run %}
        case
            when p.first_seen_at is not distinct from n.first_seen_at and p.node_id is not null
                then p.shape_loaded_at
            else n.max_loaded_at
        end as shape_loaded_at
        {%- else %}
        n.max_loaded_at as shape_loaded_at
        {%- endif %}
    from {% if merge %}merged{% else %}per_node{% endif %} as n
    inner join attributes as a on a.node_id = n.node_id
    {%- if incremental_run %}
    left join previous as p on p.node_id = n.node_id
    {%- endif %}

)

select * from final
