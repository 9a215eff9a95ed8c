{#- Identity rules as data: which staging models feed identity, and how each identifier type ranks.
    Everything here is read from YAML (model meta and project vars), so adding a source or changing a
    rule never means editing identity SQL. -#}

{#- The identity-bearing models: every model whose config.meta.identity declares its identifiers.
    dbt only knows the graph at execution time, so at parse time the same list comes from the var
    identity_input_models (the refs dbt needs to order the build); execution checks that both agree. -#}
{% macro identity_inputs() %}
    {%- set declared = var('identity_input_models', []) -%}
    {%- if not execute -%}
        {%- set inputs = [] -%}
        {%- for name in declared -%}
            {%- do inputs.append({'name': name, 'relation': ref(name), 'meta': {}}) -%}
        {%- endfor -%}
        {{ return(inputs) }}
    {%- endif -%}
    {%- set inputs = [] -%}
    {%- for node in graph.nodes.values() | sort(attribute='name') -%}
        {%- set meta = node.config.meta.get('identity') if node.config.meta else none -%}
        {%- if node.resource_type == 'model' and meta -%}
            {%- if node.name not in declared -%}
                {{ exceptions.raise_compiler_error(
                    "Model " ~ node.name ~ " declares meta.identity but is not listed in the var "
                    ~ "identity_input_models (dbt needs it there to order the build).") }}
            {%- endif -%}
            {%- for key in ['source', 'record_key', 'seen_at', 'identifiers'] -%}
                {%- if key not in meta -%}
                    {{ exceptions.raise_compiler_error(
                        "meta.identity of " ~ node.name ~ " lacks '" ~ key ~ "'") }}
                {%- endif -%}
            {%- endfor -%}
            {%- do inputs.append({'name': node.name, 'relation': ref(node.name), 'meta': meta}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for name in declared -%}
        {%- if name not in inputs | map(attribute='name') | list -%}
            {{ exceptions.raise_compiler_error(
                "identity_input_models lists " ~ name ~ " but that model declares no meta.identity") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(inputs) }}
{% endmacro %}

{#- Every identifier type with its priority (1 = strongest anchor) and the most values of that type
    one customer may hold. Types not configured rank after all configured ones. -#}
{% macro identity_type_rules() %}
    {%- set rules = var('identity_id_types') -%}
    {%- set rows = [] -%}
    {%- for id_type, rule in rules.items() -%}
        {%- do rows.append({
            'id_type': id_type,
            'priority': rule.get('priority', 50) | int,
            'max_per_customer': rule.get('max_per_customer', var('identity_default_max_per_customer', 5)) | int,
        }) -%}
    {%- endfor -%}
    {{ return(rows | sort(attribute='priority')) }}
{% endmacro %}

{#- The rules as an inline relation, to join in SQL. -#}
{% macro identity_type_rules_relation() -%}
    (
        {%- for rule in identity_type_rules() %}
        select
            cast('{{ rule.id_type }}' as varchar) as id_type,
            cast({{ rule.priority }} as integer) as priority,
            cast({{ rule.max_per_customer }} as integer) as max_per_customer
        {%- if not loop.last %}
        union all
        {%- endif %}
        {%- endfor %}
    )
{%- endmacro %}

{#- Priority of a type column, with unknown types last. -#}
{% macro identity_priority(id_type_column) -%}
    case {{ id_type_column }}
        {%- for rule in identity_type_rules() %}
        when '{{ rule.id_type }}' then {{ rule.priority }}
        {%- endfor %}
        else 999
    end
{%- endmacro %}

{#- Per-customer limit of a type column. -#}
{% macro identity_max_per_customer(id_type_column) -%}
    case {{ id_type_column }}
        {%- for rule in identity_type_rules() %}
        when '{{ rule.id_type }}' then {{ rule.max_per_customer }}
        {%- endfor %}
        else {{ var('identity_default_max_per_customer', 5) }}
    end
{%- endmacro %}

{#- A stable integer-like key per identifier, so the graph runs on fixed-width keys, not strings. -#}
{% macro identity_node_id(id_type_expr, id_value_expr) -%}
    {{ return(adapter.dispatch('identity_node_id', 'composable_cdp')(id_type_expr, id_value_expr)) }}
{%- endmacro %}

{% macro default__identity_node_id(id_type_expr, id_value_expr) -%}
    {{ dbt.hash(id_type_expr ~ " || ':' || " ~ id_value_expr) }}
{%- endmacro %}

{% macro duckdb__identity_node_id(id_type_expr, id_value_expr) -%}
    hash({{ id_type_expr }} || ':' || {{ id_value_expr }})
{%- endmacro %}

{#- The customer id minted for an anchor identifier (or a record with no identifier at all). -#}
{#- A 64-bit key of a string (DuckDB's hash; elsewhere dbt's hash), to compare customer ids of
    millions of rows without reading the strings. -#}
{% macro identity_key(expr) -%}
    {{ return(adapter.dispatch('identity_key', 'composable_cdp')(expr)) }}
{%- endmacro %}

{% macro default__identity_key(expr) -%}
    {{ dbt.hash(expr) }}
{%- endmacro %}

{% macro duckdb__identity_key(expr) -%}
    hash({{ expr }})
{%- endmacro %}

{% macro identity_mint_customer_id(key_expr) -%}
    'cus_' || substr({{ dbt.hash(key_expr) }}, 1, 20)
{%- endmacro %}

{#- The identifiers whose component int_identity__components_unchecked recomputed since the last
    identity run that finished (all of them after a full build). Downstream incremental models redo
    exactly these: they are whole components, so customers never straddle the boundary (see
    identity_attach_region for the identifiers attached alone and the components only reordered).
    regrouped_only leaves the reordered components out (their identifiers keep their customer). -#}
{% macro identity_touched_nodes(regrouped_only=false) -%}
    {%- set unchecked = ref('int_identity__components_unchecked') %}
    select node_id
    from {{ unchecked }}
    where watermark > {{ identity_completed_watermark() }}
    {%- if regrouped_only %}
        -- not the components kept as they are whose anchor and ranks were redone: their
        -- identifiers keep their customer
        and not coalesce(reordered, false)
    {%- endif %}
{%- endmacro %}

{#- The largest value of a timestamp column, read once when the model compiles and inlined as a
    literal: a filter `loaded_at > <literal>` lets DuckDB skip whole row groups by their min/max
    (appended loads are clustered by load time), where `> (select max(...))` scans every row.
    Before anything is loaded (or at parse time) it is 1900-01-01. -#}
{% macro identity_watermark(relation, column, where=none) -%}
    {%- set floor = "cast('1900-01-01' as timestamp)" -%}
    {%- if not execute or relation is none -%}{{ return(floor) }}{%- endif -%}
    {%- set query -%}
        select cast(cast(max({{ column }}) as timestamp) as varchar) from {{ relation }}
        {%- if where %} where {{ where }}{% endif %}
    {%- endset -%}
    {%- set value = run_query(query).columns[0].values()[0] -%}
    {%- if value is none -%}{{ return(floor) }}{%- endif -%}
    {{ return("cast('" ~ value ~ "' as timestamp)") }}
{%- endmacro %}

{#- The touched identifiers' components (all identifiers after a full build), held-back ones left
    out: incremental models join this (as a materialized CTE) instead of the whole components
    table, so the planner cannot join millions of rows before it filters. A filter on the
    components' watermark, not a join with identity_touched_nodes(). whole_only leaves out the
    identifiers the first pass attached alone to a component it did not re-stitch (see
    identity_attach_region): int_identity__customer_ids, which reads whole components. -#}
{% macro identity_touched_components(whole_only=false) -%}
    {%- set components = ref('int_identity__components') %}
    select c.node_id, c.component_id
    from {{ components }} as c
    where c.holdback_reason is null
    {%- if identity_incremental() %}
        -- the rows the last run of int_identity__components rewrote: the touched identifiers
        and c.watermark > {{ identity_completed_watermark() }}
        {%- if whole_only %}
        -- and not those attached alone to a component that did not change
        and not coalesce(c.attached, false)
        {%- endif %}
    {%- endif %}
{%- endmacro %}

{#- The components the last run of int_identity__components dissolved (merged into another or
    taken apart): a component is named by its smallest node, so it still exists exactly when that
    node is still its own, not held back, component. Only touched nodes can have changed. -#}
{% macro identity_dissolved_components() -%}
    {%- set components = ref('int_identity__components') %}
    select c.node_id
    from {{ components }} as c
    where c.watermark > {{ identity_completed_watermark() }}
        and (c.component_id <> c.node_id or c.holdback_reason is not null)
{%- endmacro %}

{#- Whether the registry carries node_id (registries written before it was added get it on their
    next identity_id_registry run): then the identity models find registered identifiers by the
    integer key instead of comparing type and value strings over millions of rows. -#}
{% macro identity_registry_keyed(registry) -%}
    {%- if registry is none or not execute -%}{{ return(false) }}{%- endif -%}
    {%- set names = adapter.get_columns_in_relation(registry) | map(attribute='name') | list -%}
    {{ return('node_id' in names) }}
{%- endmacro %}

{#- Pre-hook of identity_id_registry and customer_identifiers: a table written before it carried
    node_id gets the column (typed like int_identity__identifiers.node_id) and every row's value, so
    the model can replace rows by node_id. Nothing to do on a keyed table or a first build. -#}
{% macro identity_add_node_id() -%}
    {%- if execute and is_incremental() and not identity_registry_keyed(this) -%}
        {%- set node_id = adapter.get_columns_in_relation(ref('int_identity__identifiers'))
            | selectattr('name', 'equalto', 'node_id') | first -%}
        {%- do alter_relation_add_remove_columns(load_relation(this), [node_id], none) -%}
        update {{ this }} set node_id = {{ identity_node_id('id_type', 'id_value') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The watermark of the last identity run that finished: the last row int_identity__runs wrote
    (read without ref: it is written after every other identity model). Downstream models redo the
    identifiers the first pass rewrote since then, so the region of a run that died half way is
    redone by the next run even when new records arrived in between, and a run with nothing new
    redoes nothing. 1900-01-01 (everything) before any run finished. -#}
{% macro identity_completed_watermark() -%}
    {%- set unchecked = ref('int_identity__components_unchecked') -%}
    {%- set runs = adapter.get_relation(
        database=unchecked.database, schema=unchecked.schema, identifier='int_identity__runs'
    ) if execute else none -%}
    {{ return(identity_watermark(runs, 'watermark')) }}
{%- endmacro %}

{#- The registry's rows for the identifiers of `identifiers` (a relation or CTE with node_id,
    id_type, id_value): node_id, customer_id, customer_first_seen_at. A semi-join probing the
    registry with the small set; by node_id when the registry has it (see identity_registry_keyed),
    else by type and value. -#}
{% macro identity_registry_rows(registry, identifiers) -%}
    {%- if identity_registry_keyed(registry) %}
    select r.node_id, r.customer_id, r.customer_first_seen_at
    from {{ registry }} as r
    where r.node_id in (select node_id from {{ identifiers }})
    {%- else %}
    select
        {{ identity_node_id('r.id_type', 'r.id_value') }} as node_id,
        r.customer_id,
        r.customer_first_seen_at
    from {{ registry }} as r
    where exists (
        select 1 from {{ identifiers }} as c where c.id_type = r.id_type and c.id_value = r.id_value
    )
    {%- endif %}
{%- endmacro %}

{#- The earlier / later of two values, either of which may be null (then the other), as min() and
    max() treat nulls; LEAST and GREATEST do not agree on nulls across engines. Incremental models
    merge a new figure into a previous row with these. -#}
{% macro identity_least(a, b) -%}
    case when {{ a }} is null or {{ b }} < {{ a }} then {{ b }} else {{ a }} end
{%- endmacro %}

{% macro identity_greatest(a, b) -%}
    case when {{ a }} is null or {{ b }} > {{ a }} then {{ b }} else {{ a }} end
{%- endmacro %}

{#- Two sorted comma-separated lists of distinct names (int_identity__identifiers.sources) merged
    into one, sorted and distinct, as listagg(... order by ...) would have built it from all the
    rows. '' where the engine has no list functions: int_identity__identifiers then re-aggregates
    instead of merging. -#}
{% macro identity_merge_lists(a, b) -%}
    {{ return(adapter.dispatch('identity_merge_lists', 'composable_cdp')(a, b)) }}
{%- endmacro %}

{% macro default__identity_merge_lists(a, b) -%}
    {{ return('') }}
{%- endmacro %}

{% macro duckdb__identity_merge_lists(a, b) -%}
    array_to_string(list_sort(list_distinct(string_split({{ a }}, ',') || string_split({{ b }}, ','))), ',')
{%- endmacro %}

{#- Whether any record_nodes row loaded after `watermark` is a reload (is_reload: a record loaded
    again, whose earlier version downstream models already counted). Read when the model compiles;
    true at parse time. -#}
{% macro identity_has_reloads(watermark) -%}
    {%- if not execute -%}{{ return(true) }}{%- endif -%}
    {%- set query -%}
        select count(*) from {{ ref('int_identity__record_nodes') }}
        where loaded_at > {{ watermark }} and is_reload
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- Whether this run rebuilds the identity graph in full: a record reloaded since the last identity
    run that finished lost an identifier its earlier version held (int_identity__record_reloads).
    Taking an identifier or a link out can split a component, so the models from the identifiers to
    the customers rebuild everything in that run, as a --full-refresh would (customer ids stay: the
    registry and the merges are never rebuilt). A run that dies half way leaves the reload newer
    than the last finished run, so the next run rebuilds again. One small query. -#}
{% macro identity_rebuild() -%}
    {%- set reloads = ref('int_identity__record_reloads') -%}
    {%- if not execute or not is_incremental() -%}{{ return(false) }}{%- endif -%}
    {%- set runs = adapter.get_relation(
        database=reloads.database, schema=reloads.schema, identifier='int_identity__runs'
    ) -%}
    {%- set query -%}
        select count(*) from {{ reloads }}
        where lost_identifiers > 0
        {%- if runs is not none %}
            and loaded_at > coalesce(
                (select max(watermark) from {{ runs }}), cast('1900-01-01' as timestamp)
            )
        {%- endif %}
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0] > 0) }}
{%- endmacro %}

{#- is_incremental(), unless this run rebuilds the identity graph (identity_rebuild): the models
    from the identifiers to the customers take their full-build SQL then, after their pre-hook
    identity_rebuild_reset emptied them. -#}
{% macro identity_incremental() -%}
    {#- identity_rebuild() first, always: its ref() must be seen when dbt parses the model -#}
    {%- set rebuild = identity_rebuild() -%}
    {{ return(is_incremental() and not rebuild) }}
{%- endmacro %}

{#- Pre-hook of the models identity_incremental() switches: empties the table in a rebuilding run
    (in the run's transaction), so the full-build rows replace everything, identifiers and links
    no record holds any more included. -#}
{% macro identity_rebuild_reset() -%}
    {%- if identity_rebuild() -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of int_identity__record_nodes: a reloaded record whose new version holds no usable
    identifier at all has no new rows to replace its old ones by record_id; they go here. Only in a
    rebuilding run (identity_rebuild), so other runs do not probe the table. -#}
{% macro identity_drop_lost_versions() -%}
    {%- if identity_rebuild() -%}
        delete from {{ this }} as rn
        where exists (
            select 1 from {{ ref('int_identity__record_reloads') }} as r
            where r.record_id = rn.record_id
                and r.lost_identifiers > 0
                and rn.loaded_at < r.loaded_at
        )
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
