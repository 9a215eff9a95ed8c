-- Identifiers held back from merging because they are shared: seen with more distinct identifiers
-- of a stronger type than one customer may hold (an anonymous id with two user ids is a family
-- device; a phone with six emails is a support desk). One row per identifier and stronger type.
with

edges as (

    select * from {{ ref('int_identity__edges') }}

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
        {{ identity_max_per_customer('s.stronger_type') }} as max_per_customer
    from stronger_neighbours as s
    where s.distinct_values > {{ identity_max_per_customer('s.stronger_type') }}

)

select * from final
