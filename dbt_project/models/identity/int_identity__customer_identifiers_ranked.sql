{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        incremental_strategy='delete+insert',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where node_id in (select node_id from {{ ref('int_identity__components') }} where holdback_reason is not null){% else %}select 1{% endif %}",
    )
}}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- Every identifier with its customer, ranked within (customer, type) by first sight, so the per-type
-- limit keeps a customer's oldest identifiers and the rest go to identity_quarantine. Incremental
-- runs redo the touched identifiers: whole customers, so the ranks are complete. Identifiers seen
-- again outside them (same customer, same first sight) keep their customer and rank and refresh
-- what the new records changed (last_seen_at, sources, record_count). Only rows that changed are
-- written; they carry the run's watermark, so customer_identifiers finds them with a filter.
{%- set attributes = [
    'id_type', 'id_value', 'first_seen_at', 'last_seen_at', 'sources', 'record_count',
    'max_per_customer', 'max_loaded_at'] %}
with

components as materialized (

    {{ identity_touched_components() }}

),

joined as (

    select
        i.node_id,
        ci.customer_id,
        i.{{ attributes | join(', i.') }}
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

{% if is_incremental() %}
-- seen again by this run's records, in a component it did not re-stitch
refreshed as (

    select
        p.node_id,
        p.customer_id,
        i.{{ attributes | join(', i.') }},
        p.type_rank,
        p.within_limit
    from {{ ref('int_identity__identifiers') }} as i
    inner join {{ this }} as p on p.node_id = i.node_id
    where i.max_loaded_at > {{ identity_watermark(this, 'watermark') }}
        and i.node_id not in (select node_id from components)

),
{% endif %}

final as (

    select
        j.node_id,
        j.customer_id,
        j.id_type,
        j.id_value,
        j.first_seen_at,
        j.last_seen_at,
        j.sources,
        j.record_count,
        j.max_per_customer,
        j.max_loaded_at,
        coalesce(r.type_rank, 1) as type_rank,
        coalesce(r.type_rank, 1) <= j.max_per_customer as within_limit
    from joined as j
    left join ranked as r on r.node_id = j.node_id
    {%- if is_incremental() %}
    union all
    select * from refreshed
    {%- endif %}

)

select *, (select max(max_loaded_at) from {{ ref('int_identity__identifiers') }}) as watermark
from (
    select * from final
    {%- if is_incremental() %}
    -- only what changed: an identifier of a touched component usually keeps its customer and rank
    {{ cdp_except() }}
    select
        node_id, customer_id, id_type, id_value, first_seen_at, last_seen_at, sources,
        record_count, max_per_customer, max_loaded_at, type_rank, within_limit
    from {{ this }}
    where node_id in (select node_id from final)
    {%- endif %}
) as changed
