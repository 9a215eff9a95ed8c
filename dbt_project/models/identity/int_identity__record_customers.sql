{{
    config(
        materialized='incremental',
        unique_key=['record_model', 'record_key'],
        incremental_strategy='delete+insert',
    )
}}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- Every source record of every identity-bearing model and its customer: the customer of the
-- record's strongest identifier that was not held back. A record with no such identifier (none at
-- all, only junk, or only a shared device) is a customer of its own, minted from its record key:
-- a shared identifier must not join two people's records. Profiles join staging rows to customers
-- through this model.
-- Incremental runs redo the records loaded since the last run and every record holding an
-- identifier whose component was recomputed.
with

{% if is_incremental() %}
affected as (

    select record_id
    from {{ ref('int_identity__record_nodes') }}
    where node_id in ({{ identity_touched_nodes() }})
    union
    select record_id
    from {{ ref('int_identity__record_identifiers') }}
    where loaded_at > (select max(loaded_at) from {{ this }})

),
{% endif %}

-- grouped by the integer record_id: three times faster than by the strings
records as (

    select
        record_id,
        min(source) as source,
        min(record_model) as record_model,
        min(record_key) as record_key,
        max(loaded_at) as loaded_at
    from {{ ref('int_identity__record_identifiers') }}
    {%- if is_incremental() %}
    where record_id in (select record_id from affected)
    {%- endif %}
    group by record_id

),

record_nodes as (

    select rn.record_id, rn.node_id
    from {{ ref('int_identity__record_nodes') }} as rn
    {%- if is_incremental() %}
    where rn.record_id in (select record_id from affected)
    {%- endif %}

),

components as (

    select * from {{ ref('int_identity__components') }}

),

customer_ids as (

    select * from {{ ref('int_identity__customer_ids') }}

),

-- the record's identifiers that were not held back are linked by the record itself, so they share
-- one component: any of them names the customer (an aggregate, not a window over every row)
best_node as (

    select rn.record_id, min(c.component_id) as component_id
    from record_nodes as rn
    inner join components as c on c.node_id = rn.node_id
    where c.holdback_reason is null
    group by rn.record_id

),

final as (

    select
        r.source,
        r.record_model,
        r.record_key,
        coalesce(
            ci.customer_id,
            {{ identity_mint_customer_id("'record:' || r.record_model || ':' || r.record_key") }}
        ) as customer_id,
        ci.customer_id is null as is_unidentified,
        r.loaded_at
    from records as r
    left join best_node as b on b.record_id = r.record_id
    left join customer_ids as ci on ci.component_id = b.component_id

)

select * from final
