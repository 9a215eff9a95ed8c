{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        incremental_strategy='delete+insert',
        full_refresh=false,
        pre_hook="{{ identity_add_node_id() }}",
    )
}}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- The memory of identity: every identifier ever resolved and the customer_id it belongs to now.
-- Never rebuilt by --full-refresh, so customer ids survive full rebuilds and merges keep the older
-- id; int_identity__customer_ids reads it as the previous run left it. Rows change only when an
-- identifier is new or moved to another customer. It runs last: identity_merges reads the state
-- this model is about to overwrite.
-- node_id (the identifier's graph key, unique like type and value) is its key: rows are replaced by
-- an integer, not by comparing strings over millions of rows. A registry written before it existed
-- gets the column and its values first thing on its next run (the pre-hook).
-- depends_on: {{ ref('identity_merges') }}
with

components as materialized (

    {{ identity_touched_components() }}

),

current_ids as (

    select
        i.id_type,
        i.id_value,
        ci.customer_id,
        ci.customer_first_seen_at,
        {{ cdp_now() }} as assigned_at,
        i.node_id
    from components as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id
    inner join {{ ref('int_identity__customer_ids') }} as ci on ci.component_id = c.component_id

)
{%- if is_incremental() %},

-- the registry rows of these identifiers only: a semi-join probing the registry with the small set,
-- so the anti-join below builds on thousands of rows, not on the whole registry
previous as materialized (

    {{ identity_registry_rows(this, 'current_ids') }}

),
{%- endif %}

select * from current_ids as n
{%- if is_incremental() %}
where not exists (
    select 1 from previous as r
    where r.node_id = n.node_id
        and r.customer_id = n.customer_id
        and r.customer_first_seen_at is not distinct from n.customer_first_seen_at
)
{%- endif %}
