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

{#- Phone to E.164 from the raw value and its digits (computed once by the caller): a leading +
    keeps its country code, 00 is the international prefix, a national number of the default
    country's length gets the default country code (vars identity_default_country_code and
    identity_national_number_length). -#}
{% macro identity_normalize_phone(expr, digits) -%}
    {%- set cc = var('identity_default_country_code', '1') | string -%}
    {%- set national = var('identity_national_number_length', 10) | int -%}
    case
        when ltrim({{ expr }}) like '+%' and length({{ digits }}) between 8 and 15
            then '+' || {{ digits }}
        when ltrim({{ expr }}) like '00%' and length({{ digits }}) between 10 and 17
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

{#- digits: the value's digits when the type is phone (see identity_digits), else anything. -#}
{% macro identity_normalize(id_type_column, expr, digits) -%}
    case {{ id_type_column }}
        when 'email' then {{ identity_normalize_email(expr) }}
        when 'phone' then {{ identity_normalize_phone(expr, digits) }}
        else {{ identity_normalize_opaque(expr) }}
    end
{%- endmacro %}

{#- True when a value matches a regex row of the blocked-identifiers seed for its type. The
    patterns are read from the seed when the model runs and inlined as constants: a regex taken
    from a column is recompiled for every row, a hundred times slower. -#}
{% macro identity_matches_blocked_pattern(id_type_column, exprs) -%}
    {%- set ns = namespace(patterns=[], seed=none) -%}
    {%- if execute -%}
        {#- the seed's relation from the graph, not ref(): inside a unit test ref() names a fixture
            (and the graph is empty there: the seed lives in the identity schema, like the model) -#}
        {%- set ns.seed = adapter.get_relation(target.database, 'identity', 'identity_blocked_identifiers') -%}
        {%- for node in graph.get('nodes', {}).values() -%}
            {%- if node.resource_type == 'seed' and node.name == 'identity_blocked_identifiers' -%}
                {%- set ns.seed = adapter.get_relation(node.database, node.schema, node.alias) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if ns.seed is not none -%}
            {%- set ns.patterns = run_query(
                "select id_type, pattern from " ~ ns.seed
                ~ " where match_type = 'regex' order by id_type, pattern").rows -%}
        {%- endif -%}
    {%- endif -%}
    (false
    {%- for row in ns.patterns %}
    {%- for expr in exprs %}
        or ({{ "true" if row[0] == '*' else id_type_column ~ " = '" ~ row[0] ~ "'" }}
            and {{ identity_regex_matches(expr, "'" ~ (row[1] | replace("'", "''")) ~ "'") }})
    {%- endfor %}
    {%- endfor %}
    )
{%- endmacro %}

{#- Why a non-null raw value is not usable, given its normalized form (null when it is usable).
    Blocked values (the seed) are checked in int_identity__normalized_values. -#}
{% macro identity_invalid_reason(id_type_column, raw_expr, normalized_expr) -%}
    case
        when trim({{ raw_expr }}) = '' then 'empty'
        when {{ normalized_expr }} is null and {{ id_type_column }} = 'email' then 'invalid_email'
        when {{ normalized_expr }} is null and {{ id_type_column }} = 'phone' then 'invalid_phone'
        when {{ normalized_expr }} is null then 'empty'
    end
{%- endmacro %}
