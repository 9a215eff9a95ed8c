{#- Connected components of the identity graph.

    identity_connected_components(edges_sql, work_name) returns a select of (node_id, component_id)
    for every node that appears in edges_sql (a select of node_a, node_b); component_id is the
    smallest node_id of the component. Isolated nodes are the caller's business.

    The DuckDB implementation contracts the graph: each round labels every node with the smallest
    of itself and its neighbours, jumps each label to its own label once (pointer jumping), and
    rewrites the edges onto the labels, dropping the ones that collapsed. Components of the identity
    graph are small and shallow, so two or three rounds leave no edges; a round costs one scan of
    the shrinking edge set. The rounds run inside the one model build, through run_query, into work
    tables named after the model; identity_drop_work_tables (a post-hook) removes them.

    The portable default is a recursive CTE propagating the smallest reachable node id. It is
    quadratic in component size, fine for small graphs and engines without the fast path. -#}

{% macro identity_connected_components(edges_sql, work_name) -%}
    {#- var identity_components_impl: 'portable' forces the default (tests compare the two) -#}
    {%- if var('identity_components_impl', 'auto') == 'portable' -%}
        {{ return(default__identity_connected_components(edges_sql, work_name)) }}
    {%- endif -%}
    {{ return(adapter.dispatch('identity_connected_components', 'composable_cdp')(edges_sql, work_name)) }}
{%- endmacro %}

{% macro default__identity_connected_components(edges_sql, work_name) -%}
    (
        with recursive
        edges as (
            select node_a as src, node_b as dst from ({{ edges_sql }}) as e
            union all
            select node_b as src, node_a as dst from ({{ edges_sql }}) as e
        ),
        reach (node_id, label) as (
            select src, src from edges
            union
            select e.dst, r.label
            from reach as r
            inner join edges as e on e.src = r.node_id
        )
        select node_id, min(label) as component_id
        from reach
        group by node_id
    )
{%- endmacro %}

{% macro duckdb__identity_connected_components(edges_sql, work_name) -%}
    {%- set prefix = this.schema ~ '.' ~ work_name -%}
    {%- if not execute -%}
        {{ return('(select cast(null as ubigint) as node_id, cast(null as ubigint) as component_id)') }}
    {%- endif -%}
    {%- set max_rounds = var('identity_max_component_rounds', 64) | int -%}
    {% call statement('cc_round_0') %}
        create or replace table {{ prefix }}__g0 as
        select node_a as a, node_b as b from ({{ edges_sql }}) as e where node_a <> node_b
    {% endcall %}
    {%- set ns = namespace(rounds=0, done=false, current='') -%}
    {%- for i in range(max_rounds) -%}{%- if not ns.done -%}
        {% call statement('cc_label') %}
            create or replace table {{ prefix }}__l{{ i }} as
            select n, least(n, min(m)) as l
            from (
                select a as n, b as m from {{ prefix }}__g{{ i }}
                union all
                select b as n, a as m from {{ prefix }}__g{{ i }}
            ) as both_ways
            group by n
        {% endcall %}
        {% call statement('cc_jump') %}
            create or replace table {{ prefix }}__l{{ i }} as
            select x.n, coalesce(y.l, x.l) as l
            from {{ prefix }}__l{{ i }} as x
            left join {{ prefix }}__l{{ i }} as y on y.n = x.l
        {% endcall %}
        {% call statement('cc_contract') %}
            create or replace table {{ prefix }}__g{{ i + 1 }} as
            select distinct least(la.l, lb.l) as a, greatest(la.l, lb.l) as b
            from {{ prefix }}__g{{ i }} as g
            inner join {{ prefix }}__l{{ i }} as la on la.n = g.a
            inner join {{ prefix }}__l{{ i }} as lb on lb.n = g.b
            where la.l <> lb.l
        {% endcall %}
        {%- set remaining = run_query('select count(*) from ' ~ prefix ~ '__g' ~ (i + 1)).columns[0].values()[0] -%}
        {%- set ns.rounds = i + 1 -%}
        {%- if remaining == 0 -%}{%- set ns.done = true -%}{%- endif -%}
    {%- endif -%}{%- endfor -%}
    {%- if not ns.done -%}
        {{ exceptions.raise_compiler_error("identity components did not converge in " ~ max_rounds ~ " rounds") }}
    {%- endif -%}
    {#- compose the rounds' labels from the last (smallest) back to the first -#}
    {%- set ns.current = prefix ~ '__l' ~ (ns.rounds - 1) -%}
    {%- for k in range(ns.rounds - 2, -1, -1) -%}
        {% call statement('cc_compose') %}
            create or replace table {{ prefix }}__f{{ k }} as
            select x.n, coalesce(y.l, x.l) as l
            from {{ prefix }}__l{{ k }} as x
            left join {{ ns.current }} as y on y.n = x.l
        {% endcall %}
        {%- set ns.current = prefix ~ '__f' ~ k -%}
    {%- endfor -%}
    {{ log('identity components: ' ~ ns.rounds ~ ' rounds', info=false) }}
    {{ return('(select n as node_id, l as component_id from ' ~ ns.current ~ ')') }}
{%- endmacro %}

{#- Post-hook: drop the work tables of identity_connected_components. -#}
{% macro identity_drop_work_tables(work_name) -%}
    {{ return(adapter.dispatch('identity_drop_work_tables', 'composable_cdp')(work_name)) }}
{%- endmacro %}

{% macro default__identity_drop_work_tables(work_name) -%}
    select 1
{%- endmacro %}

{% macro duckdb__identity_drop_work_tables(work_name) -%}
    {%- if execute -%}
        {%- set tables = run_query(
            "select table_name from duckdb_tables() where schema_name = '" ~ this.schema
            ~ "' and database_name = current_database() and table_name like '" ~ work_name ~ "\\_\\_%' escape '\\'") -%}
        {%- for row in tables.rows -%}
            drop table if exists {{ this.schema }}.{{ row[0] }};
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
