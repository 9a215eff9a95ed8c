{#- Adapter-specific SQL lives here, behind adapter.dispatch, so the project runs on other engines. -#}

{#- A string field of a JSON text column, by JSON path ($.a.b). -#}
{% macro json_get_text(column, path) -%}
    {{ return(adapter.dispatch('json_get_text', 'composable_cdp')(column, path)) }}
{%- endmacro %}

{% macro default__json_get_text(column, path) -%}
    json_extract_path_text({{ column }}, {{ path.lstrip('$.').split('.') | map('tojson') | join(', ') }})
{%- endmacro %}

{% macro duckdb__json_get_text(column, path) -%}
    json_extract_string({{ column }}, '{{ path }}')
{%- endmacro %}

{% macro spark__json_get_text(column, path) -%}
    get_json_object({{ column }}, '{{ path }}')
{%- endmacro %}

{% macro snowflake__json_get_text(column, path) -%}
    json_extract_path_text({{ column }}, '{{ path.lstrip("$.") }}')
{%- endmacro %}

{% macro bigquery__json_get_text(column, path) -%}
    json_value({{ column }}, '{{ path }}')
{%- endmacro %}

{% macro trino__json_get_text(column, path) -%}
    json_extract_scalar({{ column }}, '{{ path }}')
{%- endmacro %}

{#- "Now" for time-relative logic: the cdp_as_of var when tests pin it, else the current time. -#}
{% macro cdp_now() -%}
    {%- if var('cdp_as_of', none) -%}
        cast('{{ var("cdp_as_of") }}' as timestamp)
    {%- else -%}
        {{ return(adapter.dispatch('cdp_now', 'composable_cdp')()) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__cdp_now() -%}
    cast({{ current_timestamp() }} as timestamp)
{%- endmacro %}

{% macro duckdb__cdp_now() -%}
    cast(now() at time zone 'UTC' as timestamp)
{%- endmacro %}

{#- Set difference of two selects (rows of the first not in the second; NULLs compare equal).
    BigQuery spells it EXCEPT DISTINCT. -#}
{% macro cdp_except() -%}
    {{ return(adapter.dispatch('cdp_except', 'composable_cdp')()) }}
{%- endmacro %}

{% macro default__cdp_except() -%}
    except
{%- endmacro %}

{% macro bigquery__cdp_except() -%}
    except distinct
{%- endmacro %}
