{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        pre_hook="{{ identity_rebuild_reset() }}",
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{{ identity_drop_work_tables('int_identity__components') }}",
    )
}}
{%- set incremental_run = identity_incremental() %}
-- Every identifier's component, after the over-merge rules:
--  * shared identifiers (int_identity__shared_identifiers) never link anything: each is alone;
--  * a first-pass component holding two values of a type allowed once per customer (two user ids)
--    is split: its identifiers weaker than that type are held back (each alone) and the rest is
--    re-stitched, so no customer ever holds two user ids.
-- component_id is the smallest node_id of the component; holdback_reason says why a node is alone.
-- Incremental runs redo the identifiers the first pass recomputed (whole components); those rows
-- carry the run's watermark, so downstream models find them with a filter, not a join.
{%- set scope_sql %}
    {%- if incremental_run %}
    {{ identity_touched_nodes() }}
    {%- else %}
    select node_id from {{ ref('int_identity__identifiers') }}
    {%- endif %}
{%- endset %}
{%- set conflicts_sql %}
    select c.component_id, min(i.priority) as split_priority
    from {{ ref('int_identity__components_unchecked') }} as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id
    where i.max_per_customer = 1
        and c.node_id in ({{ scope_sql }})
    group by c.component_id, i.id_type
    having count(*) > 1
{%- endset %}
{%- set kept_nodes_sql %}
    select c.node_id
    from {{ ref('int_identity__components_unchecked') }} as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id
    inner join ({{ conflicts_sql }}) as x on x.component_id = c.component_id
    group by c.node_id
    having min(i.priority) <= min(x.split_priority)
{%- endset %}
{%- set edges_sql %}
    select e.node_a, e.node_b
    from {{ ref('int_identity__edges') }} as e
    where e.node_a in ({{ kept_nodes_sql }}) and e.node_b in ({{ kept_nodes_sql }})
{%- endset %}

with

identifiers as (

    {{ scope_sql }}

),

shared as (

    select distinct node_id from {{ ref('int_identity__shared_identifiers') }}

),

first_pass as (

    select * from {{ ref('int_identity__components_unchecked') }}

),

conflicting_nodes as (

    select c.node_id
    from first_pass as c
    where c.component_id in (select component_id from ({{ conflicts_sql }}) as x)

),

kept_nodes as (

    {{ kept_nodes_sql }}

),

second_pass as (

    select * from {{ identity_connected_components(edges_sql, 'int_identity__components') }}

),

final as (

    select
        i.node_id,
        case
            when s.node_id is not null then i.node_id
            when cn.node_id is null then coalesce(fp.component_id, i.node_id)
            when k.node_id is null then i.node_id
            else coalesce(sp.component_id, i.node_id)
        end as component_id,
        case
            when s.node_id is not null then 'shared_identifier'
            when cn.node_id is not null and k.node_id is null then 'conflicting_anchors'
        end as holdback_reason,
        -- attached by the first pass without re-stitching its component: downstream takes it alone
        coalesce(fp.attached, false) and s.node_id is null and cn.node_id is null as attached,
        coalesce(fp.reordered, false) as reordered,
        -- the first pass's watermark: the rows this run rewrote carry the newest one
        (select max(watermark) from {{ ref('int_identity__components_unchecked') }}) as watermark
    from identifiers as i
    left join shared as s on s.node_id = i.node_id
    left join first_pass as fp on fp.node_id = i.node_id
    left join conflicting_nodes as cn on cn.node_id = i.node_id
    left join kept_nodes as k on k.node_id = i.node_id
    left join second_pass as sp on sp.node_id = i.node_id

)

select * from final
