-- Every distinct raw identifier value once, with its normalized form, or the reason it can never be
-- an identifier (empty, malformed, a placeholder or a blocked value from the seed). Normalizing
-- distinct values rather than record rows keeps the regex work proportional to the vocabulary.
with

raw_values as (

    select distinct id_type, raw_value
    from {{ ref('int_identity__record_identifiers') }}
    where id_type is not null

),

blocked as (

    select * from {{ ref('identity_blocked_identifiers') }}

),

normalized as (

    select
        id_type,
        raw_value,
        lower(trim(raw_value)) as folded_value,
        {{ identity_normalize('id_type', 'raw_value') }} as id_value,
        {{ identity_invalid_reason('id_type', 'raw_value') }} as invalid_reason
    from raw_values

),

exact_blocks as (

    select distinct n.id_type, n.raw_value
    from normalized as n
    inner join blocked as b
        on b.match_type = 'exact'
        and (b.id_type = '*' or b.id_type = n.id_type)
        and (lower(b.pattern) = n.folded_value or lower(b.pattern) = n.id_value)

),

pattern_blocks as (

    select distinct n.id_type, n.raw_value
    from normalized as n
    inner join blocked as b
        on b.match_type = 'regex'
        and (b.id_type = '*' or b.id_type = n.id_type)
        and (
            {{ identity_regex_matches('n.folded_value', 'b.pattern') }}
            or {{ identity_regex_matches('coalesce(n.id_value, n.folded_value)', 'b.pattern') }}
        )

),

final as (

    select
        n.id_type,
        n.raw_value,
        case
            when n.invalid_reason is null and eb.raw_value is null and pb.raw_value is null
                then n.id_value
        end as id_value,
        case
            when n.invalid_reason = 'empty' then 'empty'
            when eb.raw_value is not null or pb.raw_value is not null then 'blocked'
            else n.invalid_reason
        end as invalid_reason
    from normalized as n
    left join exact_blocks as eb
        on eb.id_type = n.id_type and eb.raw_value = n.raw_value
    left join pattern_blocks as pb
        on pb.id_type = n.id_type and pb.raw_value = n.raw_value

)

select * from final
