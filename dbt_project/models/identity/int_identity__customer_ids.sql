-- One customer_id per component, stable across runs and full rebuilds:
--  * a component holding identifiers already registered (identity_id_registry) keeps the oldest of
--    their customer ids; the other ids it absorbed are merges (identity_merges records them);
--  * a new component mints 'cus_' + a hash of its anchor: its earliest-seen identifier (ties: the
--    stronger type, then the value). The anchor is a function of the graph alone, so a rebuild from
--    scratch mints the same ids, and a merge of two never-registered customers keeps the older one.
-- The registry is read as the previous run left it (not ref'd: it is this model's state, written
-- after it by identity_id_registry). Incremental runs redo the components of touched identifiers,
-- write the rows that changed and drop the components that no longer exist.
{{
    config(
        materialized='incremental',
        unique_key=['component_id'],
        incremental_strategy='delete+insert',
        pre_hook=[
            "{{ identity_rebuild_reset() }}",
            "{% if identity_incremental() %}delete from {{ this }} where component_id in ({{ identity_dissolved_components() }}){% else %}select 1{% endif %}",
        ],
    )
}}
{%- set incremental_run = identity_incremental() %}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
{%- set registry = adapter.get_relation(database=this.database, schema=this.schema, identifier='identity_id_registry') %}

with

-- held-back identifiers identify nobody
touched as materialized (

    {{ identity_touched_components(whole_only=true) }}

),

components as materialized (

    select
        c.component_id,
        i.node_id,
        i.id_type,
        i.id_value,
        i.priority,
        i.first_seen_at
    from touched as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id

),

anchors as (

    select
        component_id,
        id_type as anchor_type,
        id_value as anchor_value,
        first_seen_at as component_first_seen_at
    from (
        select
            *,
            row_number() over (
                partition by component_id
                order by first_seen_at nulls last, priority, id_type, id_value
            ) as anchor_rank
        from components
    ) as ranked
    where anchor_rank = 1

),

{% if registry is not none %}
-- only the registered identifiers of these components (a semi-join, not a copy of the registry)
registry as (

    {{ identity_registry_rows(registry, 'components') }}

),

claims as (

    select
        c.component_id,
        r.customer_id,
        min(r.customer_first_seen_at) as customer_first_seen_at,
        count(*) as claimed_identifiers
    from components as c
    inner join registry as r on r.node_id = c.node_id
    group by c.component_id, r.customer_id

),

-- a registered id split across components stays with the one holding most of its identifiers
won_claims as (

    select *
    from (
        select
            cl.*,
            row_number() over (
                partition by cl.customer_id
                order by cl.claimed_identifiers desc, a.component_first_seen_at nulls last, cl.component_id
            ) as claim_rank
        from claims as cl
        inner join anchors as a on a.component_id = cl.component_id
    ) as ranked
    where claim_rank = 1

),

kept as (

    select
        *,
        row_number() over (
            partition by component_id
            order by customer_first_seen_at nulls last, customer_id
        ) as keep_rank
    from won_claims

),

absorbed as (

    select
        k.component_id,
        {{ dbt.listagg('k.customer_id', "','", 'order by k.customer_id') }} as absorbed_customer_ids
    from kept as k
    where k.keep_rank > 1
    group by k.component_id

),

{% endif %}

minted as (

    select
        a.*,
        {{ identity_mint_customer_id("a.anchor_type || ':' || a.anchor_value") }} as minted_id
    from anchors as a

),

final as (

    select
        m.component_id,
        {%- if registry is not none %}
        coalesce(
            k.customer_id,
            -- never reuse an id another component kept (only after a split)
            case when t.customer_id is null then m.minted_id
                else {{ identity_mint_customer_id("m.anchor_type || ':' || m.anchor_value || ':' || cast(m.component_id as varchar)") }}
            end
        ) as customer_id,
        coalesce(k.customer_first_seen_at, m.component_first_seen_at) as customer_first_seen_at,
        ab.absorbed_customer_ids,
        {%- else %}
        m.minted_id as customer_id,
        m.component_first_seen_at as customer_first_seen_at,
        cast(null as varchar) as absorbed_customer_ids,
        {%- endif %}
        m.anchor_type,
        m.anchor_value
    from minted as m
    {%- if registry is not none %}
    left join kept as k on k.component_id = m.component_id and k.keep_rank = 1
    left join absorbed as ab on ab.component_id = m.component_id
    -- a minted id some registered customer already holds (checked for the minted ids only)
    left join (
        select distinct customer_id from {{ registry }}
        where customer_id in (select minted_id from minted)
    ) as t on t.customer_id = m.minted_id
    {%- endif %}

)

select * from final
{%- if incremental_run %}
-- only what changed: a touched component usually keeps its customer and anchor
{{ cdp_except() }}
select
    component_id, customer_id, customer_first_seen_at, absorbed_customer_ids, anchor_type,
    anchor_value
from {{ this }}
where component_id in (select component_id from touched)
{%- endif %}
