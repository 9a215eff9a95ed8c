{{ config(materialized='view') }}
-- Everything identity held back, with a reason code, so nothing is silently dropped (a view: an
-- audit read now and then should not cost every incremental run a rebuild):
--   empty, invalid_email, invalid_phone, blocked  - a raw value that never became an identifier
--   shared_identifier    - seen with more stronger identifiers than one customer may hold (detail:
--                          type:count); it links nothing and identifies nobody
--   conflicting_anchors  - weaker identifier of a component that held two values of a
--                          once-per-customer type (two user ids); held back so they split
--   limit_exceeded       - beyond its type's max_per_customer for its customer; left out of
--                          customer_identifiers (its records still resolve through the others)
with

record_identifiers as (

    select * from {{ ref('int_identity__record_identifiers') }}
    where id_type is not null

),

invalid as (

    select
        n.invalid_reason as reason,
        n.id_type,
        n.raw_value,
        cast(null as varchar) as id_value,
        cast(null as varchar) as customer_id,
        cast(null as varchar) as detail,
        count(*) as record_count,
        {{ dbt.listagg('distinct r.source', "','", 'order by r.source') }} as sources
    from {{ ref('int_identity__normalized_values') }} as n
    inner join record_identifiers as r on r.id_type = n.id_type and r.raw_value = n.raw_value
    where n.invalid_reason is not null
    group by n.invalid_reason, n.id_type, n.raw_value

),

held_back as (

    select
        c.holdback_reason as reason,
        i.id_type,
        cast(null as varchar) as raw_value,
        i.id_value,
        cast(null as varchar) as customer_id,
        case when c.holdback_reason = 'shared_identifier' then (
            select {{ dbt.listagg("s.stronger_type || ':' || cast(s.distinct_values as varchar)", "','", 'order by s.stronger_type') }}
            from {{ ref('int_identity__shared_identifiers') }} as s
            where s.node_id = i.node_id
        ) end as detail,
        i.record_count,
        i.sources
    from {{ ref('int_identity__components') }} as c
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = c.node_id
    where c.holdback_reason is not null

),

over_limit as (

    select
        'limit_exceeded' as reason,
        r.id_type,
        cast(null as varchar) as raw_value,
        i.id_value,
        r.customer_id,
        'max_per_customer=' || cast(r.max_per_customer as varchar) as detail,
        i.record_count,
        i.sources
    from {{ ref('int_identity__customer_identifiers_ranked') }} as r
    inner join {{ ref('int_identity__identifiers') }} as i on i.node_id = r.node_id
    where not r.within_limit

),

final as (

    select * from invalid
    union all
    select * from held_back
    union all
    select * from over_limit

)

select * from final
