{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        incremental_strategy='delete+insert',
        post_hook="{{ identity_drop_work_tables('int_identity__components_unchecked') }}",
    )
}}
-- First pass: connected components over every edge whose endpoints are not shared identifiers;
-- every identifier gets a row (alone: its own node_id). Limits are checked in
-- int_identity__components.
-- Incremental runs recompute only the region new records reshape: the ends of links first made
-- by records loaded since the last run, identifiers that are new or were first seen earlier than
-- known, and every identifier of the components those were in. A record that only repeats known
-- links (most events) changes no component. New edges only join region identifiers, so the region
-- holds whole components and the result equals a full rebuild's (component_id is the smallest
-- node_id of a component either way); a newly shared identifier arrives on a new link.
{%- set watermark_sql = identity_watermark(this, 'watermark') if is_incremental() else '' %}
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
    {%- if is_incremental() %}
        and e.node_a in (select node_id from region_nodes)
    {%- endif %}
{%- endset %}

{%- if is_incremental() and execute %}
    {#- the region, once, for the component rounds and the output below -#}
    {% call statement('identity_region') %}
        create or replace temp table int_identity__components_unchecked__region as
        {{ region_sql }}
    {% endcall %}
    {%- set edges_sql = edges_sql | replace('region_nodes', 'temp.main.int_identity__components_unchecked__region') %}
{%- endif %}

with

nodes as (

    {%- if is_incremental() %}
    select node_id from temp.main.int_identity__components_unchecked__region
    {%- else %}
    select node_id from {{ ref('int_identity__identifiers') }}
    {%- endif %}

),

components as (

    select * from {{ identity_connected_components(edges_sql, 'int_identity__components_unchecked') }}

),

final as (

    select
        n.node_id,
        coalesce(c.component_id, n.node_id) as component_id,
        (select max(loaded_at) from {{ ref('int_identity__record_nodes') }}) as watermark
    from nodes as n
    left join components as c on c.node_id = n.node_id

)

select * from final
