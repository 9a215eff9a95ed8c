{{
    config(
        materialized='incremental',
        unique_key=['old_customer_id'],
        incremental_strategy='delete+insert',
        full_refresh=false,
    )
}}
-- Every merge, kept forever (never rebuilt by --full-refresh): new data joined customers that
-- earlier runs had apart; the merged customer keeps the older id. `identifiers` lists the links that
-- crossed the old boundary: identifiers on edges whose ends belonged to different customers before
-- (or were not known yet), as type:value, sorted.
-- depends_on: {{ ref('int_identity__identifiers') }}, {{ ref('int_identity__components') }}, {{ ref('int_identity__edges') }}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- depends_on: {{ ref('int_identity__record_reloads') }}
{%- set registry = adapter.get_relation(database=this.database, schema=this.schema, identifier='identity_id_registry') %}

with

customer_ids as (

    select * from {{ ref('int_identity__customer_ids') }}
    where absorbed_customer_ids is not null
    {%- if is_incremental() %}
        -- merges happen in the components this run redid (older rows keep their absorbed ids)
        and component_id in (
            select t.component_id from ({{ identity_touched_components(whole_only=true) }}) as t
        )
    {%- endif %}

),

absorbed as (

    select
        c.component_id,
        c.customer_id as new_customer_id,
        trim(a.old_customer_id) as old_customer_id
    from customer_ids as c
    cross join unnest(string_split(c.absorbed_customer_ids, ',')) as a(old_customer_id)

),

{% if registry is not none and is_incremental() %}
merged_nodes as materialized (

    select c.node_id, c.component_id, i.id_type, i.id_value
    from {{ ref('int_identity__components') }} as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id
    where c.component_id in (select component_id from absorbed)

),

-- the registry rows of those identifiers only
previous as (

    {{ identity_registry_rows(registry, 'merged_nodes') }}

),

nodes as (

    select c.node_id, c.id_type, c.id_value, c.component_id, p.customer_id as previous_customer_id
    from merged_nodes as c
    left join previous as p on p.node_id = c.node_id

),

crossing as (

    select distinct na.component_id, x.id_type || ':' || x.id_value as identifier
    from {{ ref('int_identity__edges') }} as e
    inner join nodes as na on na.node_id = e.node_a
    inner join nodes as nb on nb.node_id = e.node_b
    cross join lateral (
        select na.id_type, na.id_value
        union all
        select nb.id_type, nb.id_value
    ) as x
    where na.previous_customer_id is distinct from nb.previous_customer_id

),

evidence as (

    select component_id, {{ dbt.listagg('identifier', "','", 'order by identifier') }} as identifiers
    from crossing
    group by component_id

),
{% else %}
evidence as (

    select cast(null as ubigint) as component_id, cast(null as varchar) as identifiers
    where false

),
{% endif %}

final as (

    select
        a.old_customer_id,
        a.new_customer_id,
        {{ cdp_now() }} as merged_at,
        ev.identifiers
    from absorbed as a
    left join evidence as ev on ev.component_id = a.component_id

)

select * from final
{%- if is_incremental() %}
where old_customer_id not in (select old_customer_id from {{ this }})
{%- endif %}
