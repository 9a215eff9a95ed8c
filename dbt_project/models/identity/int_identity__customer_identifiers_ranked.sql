{{
    config(
        materialized='incremental',
        unique_key=['node_id'],
        incremental_strategy='delete+insert',
    )
}}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- Every identifier with its customer, ranked within (customer, type) by first sight, so the per-type
-- limit keeps a customer's oldest identifiers and the rest go to identity_quarantine. Incremental
-- runs redo the touched identifiers: whole customers, so the ranks are complete.
with

ranked as (

    select
        i.node_id,
        ci.customer_id,
        i.id_type,
        i.id_value,
        i.first_seen_at,
        i.last_seen_at,
        i.sources,
        i.record_count,
        i.max_per_customer,
        row_number() over (
            partition by ci.customer_id, i.id_type
            order by i.first_seen_at nulls last, i.id_value
        ) as type_rank
    from {{ ref('int_identity__identifiers') }} as i
    inner join {{ ref('int_identity__components') }} as c on c.node_id = i.node_id
    inner join {{ ref('int_identity__customer_ids') }} as ci on ci.component_id = c.component_id
    {%- if is_incremental() %}
    where i.node_id in ({{ identity_touched_nodes() }})
    {%- endif %}

),

final as (

    select *, type_rank <= max_per_customer as within_limit
    from ranked

)

select * from final
