{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook=[
            "{{ identity_rebuild_reset() }}",
            "{{ identity_add_node_id() }}",
            "{% if identity_incremental() %}delete from {{ this }} where node_id in (select node_id from {{ ref('int_identity__components') }} where holdback_reason is not null and watermark > {{ identity_completed_watermark() }} union all select node_id from {{ ref('int_identity__customer_identifiers_ranked') }} where watermark > {{ identity_completed_watermark() }}){% else %}select 1{% endif %}",
        ],
    )
}}
{%- set incremental_run = identity_incremental() %}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- depends_on: {{ ref('int_identity__identifiers') }}
-- depends_on: {{ ref('int_identity__components') }}
-- Every identifier and the one customer who holds it: the lookup table of the whole CDP.
-- Identifiers beyond their type's per-customer limit are in identity.identity_quarantine instead.
-- Incremental runs first delete, in one statement (the pre-hook, in the run's transaction), every
-- identifier int_identity__customer_identifiers_ranked rewrote (the touched components' and those
-- seen again) or that is now held back, then append those rewritten rows within their limit.
-- node_id (the identifier's graph key, a 64-bit hash of type and value) finds them by an integer;
-- a table from before it gets the column and its values first (the first pre-hook).
with

ranked as {% if incremental_run %}materialized {% endif %}(

    select node_id, customer_id
    from {{ ref('int_identity__customer_identifiers_ranked') }}
    where within_limit
    {%- if incremental_run %}
        -- the rows it rewrote since the last finished run
        and watermark > {{ identity_completed_watermark() }}
    {%- endif %}

),

final as (

    select
        r.customer_id,
        i.id_type,
        i.id_value,
        i.first_seen_at,
        i.last_seen_at,
        i.sources,
        i.node_id
    from ranked as r
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = r.node_id

)

select * from final
