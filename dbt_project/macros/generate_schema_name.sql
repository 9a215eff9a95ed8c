{#- Custom schemas are used literally (staging, identity, marts, ...), not prefixed with the target
    schema, so the table names in the README are the table names in the warehouse on every target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
