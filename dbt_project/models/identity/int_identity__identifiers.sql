-- The nodes of the identity graph: one row per normalized identifier, with when and where it was
-- seen. first_seen_at orders anchors, so it is the earliest first_seen_at of any record holding it.
with

record_nodes as (

    select * from {{ ref('int_identity__record_nodes') }}

),

source_lists as (

    select
        node_id,
        {{ dbt.listagg('source', "','", 'order by source') }} as sources
    from (select distinct node_id, source from record_nodes) as node_sources
    group by node_id

),

aggregated as (

    select
        node_id,
        min(id_type) as id_type,
        min(id_value) as id_value,
        min(priority) as priority,
        min(coalesce(first_seen_at, seen_at)) as first_seen_at,
        max(seen_at) as last_seen_at,
        count(distinct record_id) as record_count
    from record_nodes
    group by node_id

),

final as (

    select
        a.node_id,
        a.id_type,
        a.id_value,
        a.priority,
        {{ identity_max_per_customer('a.id_type') }} as max_per_customer,
        a.first_seen_at,
        a.last_seen_at,
        s.sources,
        a.record_count
    from aggregated as a
    inner join source_lists as s on s.node_id = a.node_id

)

select * from final
