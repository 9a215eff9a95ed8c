{{
    config(
        materialized='incremental',
        unique_key=['record_id'],
        incremental_strategy='delete+insert',
    )
}}
-- Records loaded again (an updated CRM contact, a user who changed their email): one row per record
-- of a load that int_identity__record_nodes already holds from an earlier load, and how many of the
-- identifiers its earlier version held the new version no longer holds (lost_identifiers).
-- It runs just before int_identity__record_nodes replaces the record's rows, and reads that model as
-- the previous run left it (not ref'd: it is that model's state, like the registry).
--  * a reload that keeps every identifier (is_reload in record_nodes): identifiers and edges
--    recount what it holds now;
--  * a reload that lost one (lost_identifiers > 0) can take an identifier or a link out of the
--    graph and split a component: the identity models downstream rebuild in full in that run
--    (identity_rebuild), which gives what a --full-refresh gives, ids kept by the registry.
-- Rows are replaced by record_id, so a run that dies after this model and before record_nodes
-- writes the same rows again; after record_nodes, the next run looks at later loads only.
-- depends_on: {{ ref('int_identity__normalized_values') }}
{%- set record_nodes = adapter.get_relation(
    database=this.database, schema=this.schema, identifier='int_identity__record_nodes'
) if execute else none %}

{%- if is_incremental() and record_nodes is not none %}
{%- set since = identity_watermark(record_nodes, 'loaded_at') %}
with

-- the records of the loads record_nodes has not taken yet
new_records as materialized (

    select record_id, max(loaded_at) as loaded_at
    from {{ ref('int_identity__record_identifiers') }}
    where loaded_at > {{ since }}
    group by record_id

),

-- what their earlier versions hold (a semi-join probing record_nodes with the few new records; every
-- row there predates them: they are the loads after its newest row)
previous as materialized (

    select rn.record_id, rn.node_id
    from {{ record_nodes }} as rn
    where rn.record_id in (select record_id from new_records)

),

-- the new versions' values, for those records only (usually none)
reloaded_values as materialized (

    select r.record_id, {{ identity_node_id('r.id_type', 'r.raw_value') }} as raw_key
    from {{ ref('int_identity__record_identifiers') }} as r
    where r.loaded_at > {{ since }}
        and r.id_type is not null
        and r.record_id in (select record_id from previous)

),

-- what the new versions hold, found as record_nodes finds it; the values are probed with the few
-- reloaded ones (a join alone would hash every normalized value)
current_nodes as (

    select distinct v.record_id, nv.node_id
    from reloaded_values as v
    inner join {{ ref('int_identity__normalized_values') }} as nv on nv.raw_key = v.raw_key
    where nv.id_value is not null
        and nv.raw_key in (select raw_key from reloaded_values)

)

select
    n.record_id,
    n.loaded_at,
    count(distinct case when c.node_id is null then p.node_id end) as lost_identifiers
from previous as p
inner join new_records as n on n.record_id = p.record_id
left join current_nodes as c on c.record_id = p.record_id and c.node_id = p.node_id
group by n.record_id, n.loaded_at

{%- else %}
-- a full build: every record is new
select record_id, loaded_at, cast(0 as bigint) as lost_identifiers
from {{ ref('int_identity__record_identifiers') }}
where 1 = 0
{%- endif %}
