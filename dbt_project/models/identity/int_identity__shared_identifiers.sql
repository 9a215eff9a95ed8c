{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        pre_hook="{{ identity_rebuild_reset() }}",
        incremental_strategy='delete+insert',
    )
}}
{%- set incremental_run = identity_incremental() %}
-- Identifiers held back from merging because they are shared: seen with more distinct identifiers
-- of a stronger type than one customer may hold (an anonymous id with two user ids is a family
-- device; a phone with six emails is a support desk). One row per identifier and stronger type.
-- Incremental runs recount the identifiers on edges new since the last run (watermark: the edges'
-- newest load then); counts only grow as records arrive, so a shared identifier stays shared.
with

edges as (

    select * from {{ ref('int_identity__edges') }}
    {%- if incremental_run %}
    where node_b in (
        select node_b from {{ ref('int_identity__edges') }}
        where max_loaded_at > {{ identity_watermark(this, 'watermark') }}
    )
    {%- endif %}

),

stronger_neighbours as (

    select
        node_b as node_id,
        type_a as stronger_type,
        count(*) as distinct_values
    from edges
    where priority_a < priority_b
    group by node_b, type_a

),

final as (

    select
        s.node_id,
        s.stronger_type,
        s.distinct_values,
        {{ identity_max_per_customer('s.stronger_type') }} as max_per_customer,
        (select max(max_loaded_at) from {{ ref('int_identity__edges') }}) as watermark
    from stronger_neighbours as s
    where s.distinct_values > {{ identity_max_per_customer('s.stronger_type') }}

)

select * from final
