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
-- runs redo the touched identifiers: whole customers, so the ranks are complete.
with

components as materialized (

    {{ identity_touched_components() }}

),

joined as (

    select
        i.node_id,
        ci.customer_id,
        i.id_type,
        i.id_value,
        i.first_seen_at,
        i.last_seen_at,
        i.sources,
        i.record_count,
        i.max_per_customer
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
        j.*,
        coalesce(r.type_rank, 1) as type_rank,
        coalesce(r.type_rank, 1) <= j.max_per_customer as within_limit
    from joined as j
    left join ranked as r on r.node_id = j.node_id

)

select * from final
