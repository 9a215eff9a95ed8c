{#- Normalization of raw identifier values, one rule per identifier type. The result is null when
    the value cannot be an identifier; identity_invalid_reason says why. -#}

{% macro identity_regex_matches(expr, pattern) -%}
    {{ return(adapter.dispatch('identity_regex_matches', 'composable_cdp')(expr, pattern)) }}
{%- endmacro %}

{% macro default__identity_regex_matches(expr, pattern) -%}
    regexp_like({{ expr }}, {{ pattern }})
{%- endmacro %}

{% macro duckdb__identity_regex_matches(expr, pattern) -%}
    regexp_matches({{ expr }}, {{ pattern }})
{%- endmacro %}

{% macro postgres__identity_regex_matches(expr, pattern) -%}
    ({{ expr }} ~ {{ pattern }})
{%- endmacro %}

{% macro identity_digits(expr) -%}
    {{ return(adapter.dispatch('identity_digits', 'composable_cdp')(expr)) }}
{%- endmacro %}

{% macro default__identity_digits(expr) -%}
    regexp_replace({{ expr }}, '[^0-9]', '')
{%- endmacro %}

{% macro duckdb__identity_digits(expr) -%}
    regexp_replace({{ expr }}, '[^0-9]', '', 'g')
{%- endmacro %}

{% macro postgres__identity_digits(expr) -%}
    regexp_replace({{ expr }}, '[^0-9]', '', 'g')
{%- endmacro %}

{#- Email: trimmed, lower-cased, one @ with a dotted domain and no spaces. -#}
{% macro identity_normalize_email(expr) -%}
    case
        when {{ identity_regex_matches('lower(trim(' ~ expr ~ '))',
            "'^[^@[:space:]]+@[^@[:space:].]+([.][^@[:space:].]+)+$'") }}
        then lower(trim({{ expr }}))
    end
{%- endmacro %}

{#- Phone to E.164: a leading + keeps its country code; a national number of the default
    country's length gets the default country code (var identity_default_country_code). -#}
{% macro identity_normalize_phone(expr) -%}
    {%- set cc = var('identity_default_country_code', '1') | string -%}
    {%- set national = var('identity_national_number_length', 10) | int -%}
    {%- set digits = identity_digits(expr) -%}
    case
        when trim({{ expr }}) like '+%' and length({{ digits }}) between 8 and 15
            then '+' || {{ digits }}
        when trim({{ expr }}) like '00%' and length({{ digits }}) between 10 and 17
            then '+' || substr({{ digits }}, 3)
        when length({{ digits }}) = {{ national }}
            then '+{{ cc }}' || {{ digits }}
        when length({{ digits }}) = {{ national + cc | length }} and {{ digits }} like '{{ cc }}%'
            then '+' || {{ digits }}
    end
{%- endmacro %}

{#- Opaque ids (user ids, source record ids, anonymous ids): trimmed, case kept. -#}
{% macro identity_normalize_opaque(expr) -%}
    nullif(trim({{ expr }}), '')
{%- endmacro %}

{% macro identity_normalize(id_type_column, expr) -%}
    case {{ id_type_column }}
        when 'email' then {{ identity_normalize_email(expr) }}
        when 'phone' then {{ identity_normalize_phone(expr) }}
        else {{ identity_normalize_opaque(expr) }}
    end
{%- endmacro %}

{#- Why a non-null raw value is not usable (null when it is). Blocked values come from the seed. -#}
{% macro identity_invalid_reason(id_type_column, expr) -%}
    case
        when trim({{ expr }}) = '' then 'empty'
        when {{ id_type_column }} = 'email' and {{ identity_normalize_email(expr) }} is null
            then 'invalid_email'
        when {{ id_type_column }} = 'phone' and {{ identity_normalize_phone(expr) }} is null
            then 'invalid_phone'
    end
{%- endmacro %}
