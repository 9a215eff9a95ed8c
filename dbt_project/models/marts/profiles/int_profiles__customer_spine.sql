-- Every customer identity knows of, once: the spine every trait model and the profile hang on,
-- so each trait covers every customer (zeros, not missing rows) and no customer is dropped.
with

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

final as (

    select
        customer_id,
        count(*) as source_record_count,
        count(distinct source) as source_count

    from record_customers
    group by customer_id

)

select * from final
