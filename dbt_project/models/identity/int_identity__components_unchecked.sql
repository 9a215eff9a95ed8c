{{ config(post_hook="{{ identity_drop_work_tables('int_identity__components_unchecked') }}") }}
-- First pass: connected components over every edge whose endpoints are not shared identifiers.
-- Limits are checked in int_identity__components.
{%- set edges_sql %}
    select e.node_a, e.node_b
    from {{ ref('int_identity__edges') }} as e
    where not exists (
        select 1 from {{ ref('int_identity__shared_identifiers') }} as s
        where s.node_id = e.node_a or s.node_id = e.node_b
    )
{%- endset %}

with

components as (

    select * from {{ identity_connected_components(edges_sql, 'int_identity__components_unchecked') }}

)

select node_id, component_id from components
