-- The latest consent decision per (customer, purpose). On equal timestamps an explicit
-- preference-centre event beats a CRM flag, which beats the product's checkbox.
with

ledger as (

    select * from {{ ref('consent_ledger') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by customer_id, purpose
            order by
                decided_at desc nulls last,
                case source when 'events' then 1 when 'hubspot' then 2 else 3 end,
                record_key
        ) as decision_rank

    from ledger

),

final as (

    select
        customer_id,
        purpose,
        channel,
        granted,
        decided_at,
        source

    from ranked
    where decision_rank = 1

)

select * from final
