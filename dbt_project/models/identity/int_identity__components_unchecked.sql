{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        pre_hook="{{ identity_rebuild_reset() }}",
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{{ identity_drop_work_tables('int_identity__components_unchecked') }}",
    )
}}
{%- set incremental_run = identity_incremental() %}
-- First pass: connected components over every edge whose endpoints are not shared identifiers;
-- every identifier gets a row (alone: its own node_id). Limits are checked in
-- int_identity__components.
-- Incremental runs recompute only the region new records reshape (identity_attach_region): the
-- components new links merge, split (a newly shared identifier) or may re-anchor, and new
-- identifiers that start a customer. A new identifier that only joins one existing component and
-- changes nothing else in it is attached to it (attached: downstream takes it alone), and a record
-- that only repeats known links (most events) changes no component. New edges only join region
-- identifiers, so the region holds whole components and the result equals a full rebuild's
-- (component_id is the smallest node_id of a component either way). Without the downstream
-- models' state (a partial build) every new link and first sighting re-stitches its component.
{%- set watermark_sql = identity_watermark(this, 'watermark') if incremental_run else '' %}
{%- set region_sql %}
    with seeds as (
        -- links first made by this load (a new identifier comes with its links)
        select node_a as node_id from {{ ref('int_identity__edges') }}
        where first_loaded_at > {{ watermark_sql }}
        union
        select node_b from {{ ref('int_identity__edges') }}
        where first_loaded_at > {{ watermark_sql }}
        union
        -- new identifiers, and those whose first_seen_at moved (it orders anchors and limits)
        select node_id from {{ ref('int_identity__identifiers') }}
        where shape_loaded_at > {{ watermark_sql }}
    )
    select node_id from {{ this }}
    where component_id in (
        select c.component_id
        from {{ this }} as c
        where c.node_id in (select node_id from seeds)
    )
    union
    select node_id from seeds
{%- endset %}
{%- set edges_sql %}
    select e.node_a, e.node_b
    from {{ ref('int_identity__edges') }} as e
    -- two anti-joins, not one with an OR: an OR join condition cannot be hashed
    where e.node_a not in (select node_id from {{ ref('int_identity__shared_identifiers') }})
        and e.node_b not in (select node_id from {{ ref('int_identity__shared_identifiers') }})
    {%- if incremental_run %}
        and e.node_a in (select node_id from region_nodes)
    {%- endif %}
{%- endset %}

{%- if incremental_run and execute %}
    {#- the state the downstream models left: without it (a partial build) every seed re-stitches -#}
    {%- set state = namespace(ok=true, rel={}) %}
    {%- for name in ['int_identity__components', 'int_identity__customer_ids', 'int_identity__customer_identifiers_ranked'] %}
        {%- set rel = adapter.get_relation(database=this.database, schema=this.schema, identifier=name) %}
        {%- if rel is none %}{% set state.ok = false %}{% endif %}
        {%- do state.rel.update({name: rel}) %}
    {%- endfor %}
    {%- if state.ok %}
        {{ identity_attach_region(watermark_sql, state.rel) }}
    {%- else %}
    {% call statement('identity_region') %}
        create or replace temp table int_identity__components_unchecked__region as
        {{ region_sql }};
        create or replace temp table int_identity__components_unchecked__kept as
        select
            cast(null as ubigint) as node_id,
            cast(null as ubigint) as component_id,
            cast(null as boolean) as reordered
        where false
    {% endcall %}
    {%- endif %}
    {%- set edges_sql = edges_sql | replace('region_nodes', 'temp.main.int_identity__components_unchecked__region') %}
{%- endif %}

with

nodes as (

    {%- if incremental_run %}
    select node_id, cast(null as ubigint) as kept_as, cast(null as boolean) as reordered
    from temp.main.int_identity__components_unchecked__region
    union all
    select node_id, component_id, reordered from temp.main.int_identity__components_unchecked__kept
    {%- else %}
    select node_id, cast(null as ubigint) as kept_as, cast(null as boolean) as reordered
    from {{ ref('int_identity__identifiers') }}
    {%- endif %}

),

components as (

    select * from {{ identity_connected_components(edges_sql, 'int_identity__components_unchecked') }}

),

final as (

    select
        n.node_id,
        coalesce(n.kept_as, c.component_id, n.node_id) as component_id,
        -- a new identifier attached alone to a component kept as it is
        coalesce(not n.reordered, false) as attached,
        -- a component kept as it is whose anchor and ranks are redone
        coalesce(n.reordered, false) as reordered,
        (select max(loaded_at) from {{ ref('int_identity__record_nodes') }}) as watermark
    from nodes as n
    left join components as c on c.node_id = n.node_id

)

select * from final
