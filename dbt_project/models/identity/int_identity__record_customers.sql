-- Every source record of every identity-bearing model and its customer: the customer of the
-- record's strongest identifier that was not held back. A record with no such identifier (none at
-- all, only junk, or only a shared device) is a customer of its own, minted from its record key:
-- a shared identifier must not join two people's records. Profiles join staging rows to customers
-- through this model.
with

records as (

    select distinct source, record_model, record_key
    from {{ ref('int_identity__record_identifiers') }}

),

record_nodes as (

    select * from {{ ref('int_identity__record_nodes') }}

),

components as (

    select * from {{ ref('int_identity__components') }}

),

customer_ids as (

    select * from {{ ref('int_identity__customer_ids') }}

),

best_node as (

    select record_model, record_key, component_id
    from (
        select
            rn.record_model,
            rn.record_key,
            c.component_id,
            row_number() over (
                partition by rn.record_model, rn.record_key
                order by
                    rn.priority,
                    rn.id_type,
                    rn.id_value
            ) as node_rank
        from record_nodes as rn
        inner join components as c on c.node_id = rn.node_id
        where c.holdback_reason is null
    ) as ranked
    where node_rank = 1

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
        ci.customer_id is null as is_unidentified
    from records as r
    left join best_node as b
        on b.record_model = r.record_model and b.record_key = r.record_key
    left join customer_ids as ci on ci.component_id = b.component_id

)

select * from final
