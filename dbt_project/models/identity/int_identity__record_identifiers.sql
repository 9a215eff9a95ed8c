{{
    config(
        materialized='incremental',
        unique_key=['record_id'],
        incremental_strategy='delete+insert',
    )
}}
-- One row per (source record, raw identifier value), collected from every staging model whose YAML
-- declares config.meta.identity, so a new source needs YAML and no identity SQL. A record with no
-- identifier value at all still gets one row (id_type null) so it still gets a customer of its own.
-- Each staging model is read once: a cross join with its list of identifier columns unpivots it.
-- Incremental runs take the records loaded since the last run (_loaded_at) and replace them whole.
{%- set inputs = identity_inputs() %}

with

{% for input in inputs %}
{%- set meta = input.meta %}
{%- set first_seen = meta.get('first_seen_at', meta.seen_at) %}
{%- set columns = meta.identifiers %}
{{ input.name }} as (

    select
        '{{ meta.source }}' as source,
        '{{ input.name }}' as record_model,
        cast(r.{{ meta.record_key }} as varchar) as record_key,
        {{ identity_node_id("'" ~ input.name ~ "'", 'cast(r.' ~ meta.record_key ~ ' as varchar)') }} as record_id,
        cast(r.{{ meta.seen_at }} as timestamp) as seen_at,
        cast(r.{{ first_seen }} as timestamp) as first_seen_at,
        r._loaded_at as loaded_at,
        k.id_type,
        case k.position
            {%- for identifier in columns %}
            when {{ loop.index }} then cast(r.{{ identifier.column }} as varchar)
            {%- endfor %}
        end as raw_value,
        k.position,
        coalesce(
            {%- for identifier in columns %}
            cast(r.{{ identifier.column }} as varchar){{ ',' if not loop.last }}
            {%- endfor %}
        ) is null as has_no_identifier

    from {{ input.relation }} as r
    cross join (
        select 0 as position, cast(null as varchar) as id_type
        {%- for identifier in columns %}
        union all select {{ loop.index }}, '{{ identifier.type }}'
        {%- endfor %}
    ) as k
    {%- if is_incremental() %}
    where r._loaded_at > {{ identity_watermark(this, 'loaded_at', "record_model = '" ~ input.name ~ "'") }}
    {%- endif %}

),

{% endfor %}

final as (

    {%- for input in inputs %}
    select
        source, record_model, record_key, record_id, seen_at, first_seen_at, loaded_at,
        id_type, raw_value
    from {{ input.name }}
    where (position = 0 and has_no_identifier) or (position > 0 and raw_value is not null)
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

)

select * from final
