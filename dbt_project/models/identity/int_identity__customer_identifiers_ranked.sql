{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        incremental_strategy='delete+insert',
        pre_hook=[
            "{{ identity_rebuild_reset() }}",
            "{% if identity_incremental() %}delete from {{ this }} where node_id in (select node_id from {{ ref('int_identity__components') }} where holdback_reason is not null){% else %}select 1{% endif %}",
        ],
    )
}}
{%- set incremental_run = identity_incremental() %}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- Every identifier that identifies someone, with its customer, ranked within (customer, type) by
-- first sight, so the per-type limit keeps a customer's oldest identifiers and the rest go to
-- identity_quarantine. Narrow on purpose (keys, rank, the load that last saw it):
-- customer_identifiers takes the values from int_identity__identifiers.
-- Incremental runs redo the touched identifiers: whole customers, so the ranks are complete.
-- Identifiers seen again outside them keep their customer and rank; their row records the new
-- max_loaded_at, which tells customer_identifiers to refresh last_seen_at and sources. Only rows
-- that changed are written; they carry the run's watermark, so customer_identifiers finds them
-- with a filter.
with

components as materialized (

    {{ identity_touched_components() }}

),

joined as (

    select
        c.node_id,
        ci.customer_id,
        i.id_type,
        i.id_value,
        i.first_seen_at,
        i.max_per_customer,
        i.max_loaded_at
    from components as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id
    inner join {{ ref('int_identity__customer_ids') }} as ci on ci.component_id = c.component_id

),

-- only (customer, type) groups over their limit need ranking; sorting every group would not pay
over_limit_groups as (

    select customer_id, id_type
    from joined
    group by customer_id, id_type, max_per_customer
    having count(*) > max_per_customer

),

ranked as (

    select
        j.node_id,
        row_number() over (
            partition by j.customer_id, j.id_type
            order by j.first_seen_at nulls last, j.id_value
        ) as type_rank
    from joined as j
    inner join over_limit_groups as g on g.customer_id = j.customer_id and g.id_type = j.id_type

),

final as (

    select
        j.node_id,
        j.customer_id,
        j.id_type,
        j.max_per_customer,
        coalesce(r.type_rank, 1) as type_rank,
        coalesce(r.type_rank, 1) <= j.max_per_customer as within_limit,
        j.max_loaded_at
    from joined as j
    left join ranked as r on r.node_id = j.node_id
    {%- if incremental_run %}
    union all
    -- seen again by this run's records, in a component it did not re-stitch
    select
        p.node_id,
        p.customer_id,
        p.id_type,
        p.max_per_customer,
        p.type_rank,
        p.within_limit,
        i.max_loaded_at
    from {{ ref('int_identity__identifiers') }} as i
    inner join {{ this }} as p on p.node_id = i.node_id
    where i.max_loaded_at > {{ identity_watermark(this, 'watermark') }}
        and i.node_id not in (select node_id from components)
    {%- endif %}

)

select *, (select max(max_loaded_at) from {{ ref('int_identity__identifiers') }}) as watermark
from (
    select * from final
    {%- if incremental_run %}
    -- only what changed: an identifier of a touched component usually keeps its place
    {{ cdp_except() }}
    select
        node_id, customer_id, id_type, max_per_customer, type_rank, within_limit, max_loaded_at
    from {{ this }}
    where node_id in (select node_id from final)
    {%- endif %}
) as changed
