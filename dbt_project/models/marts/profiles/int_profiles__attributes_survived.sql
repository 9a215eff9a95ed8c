-- The winning value per (customer, attribute): the best-ranked source in survivorship_rules that
-- has a value, then the most recently observed value, then the smallest value (so ties are
-- deterministic). The losing candidates stay in int_profiles__attribute_candidates.
with

candidates as (

    select * from {{ ref('int_profiles__attribute_candidates') }}

),

rules as (

    select * from {{ ref('survivorship_rules') }}

),

ranked as (

    select
        c.customer_id,
        c.attribute,
        c.value,
        c.source,
        c.record_model,
        c.record_key,
        c.observed_at,
        r.priority,
        row_number() over (
            partition by c.customer_id, c.attribute
            order by r.priority, c.observed_at desc nulls last, c.value, c.record_key
        ) as candidate_rank,
        count(*) over (partition by c.customer_id, c.attribute) as candidate_count

    from candidates as c
    -- a source not declared for an attribute never supplies it
    inner join rules as r
        on r.attribute = c.attribute and r.source = c.source

),

final as (

    select
        customer_id,
        attribute,
        value,
        source,
        record_model,
        record_key,
        observed_at,
        priority,
        candidate_count

    from ranked
    where candidate_rank = 1

)

select * from final
