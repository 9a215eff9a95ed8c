-- Every identifier and the one customer who holds it: the lookup table of the whole CDP.
-- Identifiers beyond their type's per-customer limit are in identity.identity_quarantine instead.
with

ranked as (

    select * from {{ ref('int_identity__customer_identifiers_ranked') }}

),

final as (

    select
        customer_id,
        id_type,
        id_value,
        first_seen_at,
        last_seen_at,
        sources
    from ranked
    where within_limit

)

select * from final
