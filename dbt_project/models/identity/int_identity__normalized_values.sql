{{
    config(
        materialized='incremental',
        unique_key=['raw_key'],
        incremental_strategy='delete+insert',
    )
}}
-- Every distinct raw identifier value once, with its normalized form, or the reason it can never be
-- an identifier (empty, malformed, a placeholder or a blocked value from the seed). Normalizing
-- distinct values rather than record rows keeps the regex work proportional to the vocabulary;
-- incremental runs normalize only values first loaded since the last run. (A changed blocked-values
-- seed applies to existing values after a --full-refresh.)
with

raw_values as {% if is_incremental() %}materialized {% endif %}(

    select
        id_type,
        raw_value,
        {{ identity_node_id('id_type', 'raw_value') }} as raw_key,
        max(loaded_at) as loaded_at
    from {{ ref('int_identity__record_identifiers') }} as r
    where id_type is not null
    {%- if is_incremental() %}
        and loaded_at > {{ identity_watermark(this, 'loaded_at') }}
    {%- endif %}
    group by id_type, raw_value

),

{% if is_incremental() %}
-- the new values already known (probing the table with the few new keys: a hash table of the
-- new keys, not of the millions known)
known as (

    select raw_key
    from {{ this }}
    where raw_key in (select raw_key from raw_values)

),
{% endif %}

blocked as (

    select id_type, match_type, lower(pattern) as pattern
    from {{ ref('identity_blocked_identifiers') }}

),

with_digits as (

    select
        id_type,
        raw_value,
        raw_key,
        loaded_at,
        case when id_type = 'phone' then {{ identity_digits('raw_value') }} end as digits
    from raw_values as rv
    {%- if is_incremental() %}
    where rv.raw_key not in (select raw_key from known)
    {%- endif %}

),

normalized as (

    select
        id_type,
        raw_value,
        raw_key,
        loaded_at,
        lower(trim(raw_value)) as folded_value,
        {{ identity_normalize('id_type', 'raw_value', 'digits') }} as id_value
    from with_digits

),

checked as (

    select
        *,
        {{ identity_invalid_reason('id_type', 'raw_value', 'id_value') }} as invalid_reason
    from normalized

),

-- exact blocks match the folded raw value or the normalized value (two equi-joins)
exact_blocks as (

    select c.id_type, c.raw_value
    from checked as c
    inner join blocked as b
        on b.match_type = 'exact' and b.pattern = c.folded_value
        and (b.id_type = '*' or b.id_type = c.id_type)
    union
    select c.id_type, c.raw_value
    from checked as c
    inner join blocked as b
        on b.match_type = 'exact' and b.pattern = c.id_value
        and (b.id_type = '*' or b.id_type = c.id_type)

),

pattern_blocks as (

    select c.id_type, c.raw_value
    from checked as c
    where c.invalid_reason is null
        and {{ identity_matches_blocked_pattern('c.id_type', ['c.folded_value', 'c.id_value']) }}

),

final as (

    select
        c.id_type,
        c.raw_value,
        -- the raw value's key (a hash of type and value): record_nodes and incremental runs look
        -- values up by this integer, not by comparing strings over millions of rows
        c.raw_key,
        case
            when c.invalid_reason is null and eb.raw_value is null and pb.raw_value is null
                then c.id_value
        end as id_value,
        -- the identifier's graph key, computed once per distinct value
        case
            when c.invalid_reason is null and eb.raw_value is null and pb.raw_value is null
                then {{ identity_node_id('c.id_type', 'c.id_value') }}
        end as node_id,
        case
            when c.invalid_reason = 'empty' then 'empty'
            when eb.raw_value is not null or pb.raw_value is not null then 'blocked'
            else c.invalid_reason
        end as invalid_reason,
        c.loaded_at
    from checked as c
    left join exact_blocks as eb
        on eb.id_type = c.id_type and eb.raw_value = c.raw_value
    left join pattern_blocks as pb
        on pb.id_type = c.id_type and pb.raw_value = c.raw_value

)

select * from final
