{{
    config(
        materialized='incremental',
        unique_key=['node_a', 'node_b'],
        pre_hook="{{ identity_rebuild_reset() }}",
        incremental_strategy='delete+insert',
    )
}}
{%- set incremental_run = identity_incremental() %}
-- The edges of the identity graph: two identifiers seen on the same source record (an alias event
-- carries previousId and userId on one record, so it links them too). Oriented so node_a is the
-- stronger identifier; each edge keeps one example record (its record_id: the smallest of the records
-- carrying the link) so a link can always be explained.
-- Incremental runs redo the edges the records loaded since the last run carry; no other edge
-- changed. An edge's new figures are merged into its previous row (counts add, the first sighting,
-- example record and first load take the earlier one), so a run reads only the new rows of
-- record_nodes. An edge a reloaded record carries (is_reload: its earlier version is already
-- counted) is recounted over all the records holding its ends instead.
{%- set watermark = identity_watermark(this, 'max_loaded_at') if incremental_run else '' %}
{%- set reloads = identity_has_reloads(watermark) if incremental_run else false %}
with

{% if incremental_run %}
new_rows as (

    select record_id, seen_at, loaded_at, node_id, id_type, priority, is_reload
    from {{ ref('int_identity__record_nodes') }}
    where loaded_at > {{ watermark }}

),

-- the links the new records carry: only these edges can change (a record adds to the links it
-- holds and to no other), with their figures over the new records
new_pairs as materialized (

    select
        a.node_id as node_a,
        b.node_id as node_b,
        min(a.id_type) as type_a,
        min(b.id_type) as type_b,
        min(a.priority) as priority_a,
        min(b.priority) as priority_b,
        count(*) as record_count,
        min(a.seen_at) as first_seen_at,
        min(a.record_id) as example_record_id,
        max(greatest(a.loaded_at, b.loaded_at)) as max_loaded_at,
        min(greatest(a.loaded_at, b.loaded_at)) as first_loaded_at,
        bool_or(a.is_reload or b.is_reload) as reloaded
    from new_rows as a
    inner join new_rows as b
        on a.record_id = b.record_id
        and (a.priority < b.priority or (a.priority = b.priority and a.node_id < b.node_id))
    group by a.node_id, b.node_id

),
{% endif %}

-- a full build: every record; incremental: every record holding an end of a link a reloaded
-- record carries, to recount those links over all records
{%- if not incremental_run or reloads %}
record_nodes as {% if incremental_run %}materialized {% endif %}(

    select record_id, seen_at, loaded_at, node_id, id_type, priority
    from {{ ref('int_identity__record_nodes') }}
    {%- if incremental_run %}
    where node_id in (
        select node_a from new_pairs where reloaded
        union
        select node_b from new_pairs where reloaded
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
        a.record_id,
        a.seen_at,
        greatest(a.loaded_at, b.loaded_at) as loaded_at
    from record_nodes as a
    inner join record_nodes as b
        on a.record_id = b.record_id
        and (a.priority < b.priority or (a.priority = b.priority and a.node_id < b.node_id))
    {%- if incremental_run %}
    where exists (
        select 1 from new_pairs as n
        where n.reloaded and n.node_a = a.node_id and n.node_b = b.node_id
    )
    {%- endif %}

),

counted as (

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

),
{%- endif %}

final as (

    {%- if incremental_run %}
    -- the new records' figures added to the previous row (a new edge: they are its figures)
    select
        n.node_a,
        n.node_b,
        n.type_a,
        n.type_b,
        n.priority_a,
        n.priority_b,
        n.record_count + coalesce(p.record_count, 0) as record_count,
        case when p.node_a is null then n.first_seen_at
            else {{ identity_least('p.first_seen_at', 'n.first_seen_at') }} end as first_seen_at,
        case when p.node_a is null then n.example_record_id
            else {{ identity_least('p.example_record_id', 'n.example_record_id') }} end as example_record_id,
        case when p.node_a is null then n.max_loaded_at
            else {{ identity_greatest('p.max_loaded_at', 'n.max_loaded_at') }} end as max_loaded_at,
        coalesce(p.first_loaded_at, n.first_loaded_at) as first_loaded_at
    from new_pairs as n
    left join (
        select *
        from {{ this }}
        where node_a in (select node_a from new_pairs where not reloaded)
    ) as p on p.node_a = n.node_a and p.node_b = n.node_b
    where not n.reloaded
    {%- if reloads %}
    union all
    select * from counted
    {%- endif %}
    {%- else %}
    select * from counted
    {%- endif %}

)

select * from final
