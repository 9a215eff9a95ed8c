-- One row per (source record, raw identifier value), collected from every staging model whose YAML
-- declares config.meta.identity, so a new source needs YAML and no identity SQL. A record with no
-- identifier value at all still gets one row (id_type null) so it still gets a customer of its own.
{%- set inputs = identity_inputs() %}

with

{% for input in inputs %}
{%- set meta = input.meta %}
{%- set first_seen = meta.get('first_seen_at', meta.seen_at) %}
{{ input.name }} as (

    select
        '{{ meta.source }}' as source,
        '{{ input.name }}' as record_model,
        cast({{ meta.record_key }} as varchar) as record_key,
        cast({{ meta.seen_at }} as timestamp) as seen_at,
        cast({{ first_seen }} as timestamp) as first_seen_at,
        _loaded_at as loaded_at,
        {%- for identifier in meta.identifiers %}
        cast({{ identifier.column }} as varchar) as id_{{ loop.index }}{{ ',' if not loop.last }}
        {%- endfor %}

    from {{ input.relation }}

),

{{ input.name }}_identifiers as (

    {%- for identifier in meta.identifiers %}
    select
        source, record_model, record_key, seen_at, first_seen_at, loaded_at,
        '{{ identifier.type }}' as id_type,
        id_{{ loop.index }} as raw_value
    from {{ input.name }}
    where id_{{ loop.index }} is not null
    union all
    {%- endfor %}
    select
        source, record_model, record_key, seen_at, first_seen_at, loaded_at,
        cast(null as varchar) as id_type,
        cast(null as varchar) as raw_value
    from {{ input.name }}
    where coalesce({% for identifier in meta.identifiers %}id_{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %}) is null

),

{% endfor %}

final as (

    {%- for input in inputs %}
    select * from {{ input.name }}_identifiers
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

)

select * from final
