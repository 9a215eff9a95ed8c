{#- Connected components of the identity graph.

    identity_connected_components(edges_sql, work_name) returns a select of (node_id, component_id)
    for nodes of edges_sql (a select of node_a, node_b) whose component_id is not the node itself;
    component_id is the smallest node_id of the component. A node it leaves out (a component's
    smallest node, or a node on no edge) is its own component: callers left-join and coalesce.

    The DuckDB implementation contracts the graph. Each round orients the edges small -> large,
    hooks every node to its smallest smaller neighbour (one aggregate over the edges, no union of
    both directions), jumps the hooks (pointer jumping: once in the first round, which flattens the
    shallow hook trees of CDP graphs; round i doubles i + 1 times, so even a chain whose ids fall
    along it needs only logarithmically many rounds), and rewrites the edges onto the labels,
    dropping those whose ends now share a label: finished components vanish from the next round.
    Labels are kept only for nodes that have a smaller neighbour, so no round copies the whole node
    set. On CDP graphs three rounds leave no edge; the first, over every edge, costs one aggregate
    and three hash joins. The rounds run inside the model build through run_query, into
    connection-local temporary tables (no writes to the database file) named after the model;
    identity_drop_work_tables (a post-hook) removes them. The macro logs its own wall time
    ("identity components: <work_name> N rounds in S s"), which the benchmark puts next to scipy.

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
    {%- set prefix = 'temp.main.' ~ work_name -%}
    {%- if not execute -%}
        {{ return('(select cast(null as ubigint) as node_id, cast(null as ubigint) as component_id)') }}
    {%- endif -%}
    {%- set started = modules.datetime.datetime.now() -%}
    {%- set max_rounds = var('identity_max_component_rounds', 64) | int -%}
    {#- g<i>: round i's edges, a < b; l<i>: round i's label of every node with a smaller neighbour -#}
    {% call statement('cc_edges') %}
        create or replace temp table {{ work_name }}__g0 as
        select least(node_a, node_b) as a, greatest(node_a, node_b) as b
        from ({{ edges_sql }}) as e
        where node_a <> node_b
    {% endcall %}
    {%- set ns = namespace(rounds=0, done=false, current='', jumped='', labels=[]) -%}
    {%- for i in range(max_rounds) -%}{%- if not ns.done -%}
        {% call statement('cc_hook') %}
            create or replace temp table {{ work_name }}__h{{ i }} as
            select b as n, min(a) as l
            from {{ prefix }}__g{{ i }}
            group by b
        {% endcall %}
        {#- round i jumps i + 1 times (pointer doubling): one jump flattens the shallow hook trees
            of CDP graphs; long chains (ids falling along a path) would otherwise lose only two
            nodes a round, now 2^(i+1) -#}
        {%- set ns.jumped = prefix ~ '__h' ~ i -%}
        {%- for j in range(i + 1) -%}
            {% call statement('cc_jump') %}
                create or replace temp table {{ work_name }}__l{{ i }}_{{ j }} as
                select x.n, coalesce(y.l, x.l) as l
                from {{ ns.jumped }} as x
                left join {{ ns.jumped }} as y on y.n = x.l
            {% endcall %}
            {%- set ns.jumped = prefix ~ '__l' ~ i ~ '_' ~ j -%}
        {%- endfor -%}
        {%- do ns.labels.append(ns.jumped) -%}
        {#- a node without a label (no smaller neighbour) is its own label -#}
        {% call statement('cc_contract') %}
            create or replace temp table {{ work_name }}__g{{ i + 1 }} as
            select distinct least(la, lb) as a, greatest(la, lb) as b
            from (
                select coalesce(x.l, g.a) as la, y.l as lb
                from {{ prefix }}__g{{ i }} as g
                inner join {{ ns.jumped }} as y on y.n = g.b
                left join {{ ns.jumped }} as x on x.n = g.a
            ) as relabelled
            where la <> lb
        {% endcall %}
        {%- set remaining = run_query('select count(*) from ' ~ prefix ~ '__g' ~ (i + 1)).columns[0].values()[0] -%}
        {%- set ns.rounds = i + 1 -%}
        {%- if remaining == 0 -%}{%- set ns.done = true -%}{%- endif -%}
    {%- endif -%}{%- endfor -%}
    {%- if not ns.done -%}
        {{ exceptions.raise_compiler_error("identity components did not converge in " ~ max_rounds ~ " rounds") }}
    {%- endif -%}
    {#- compose the rounds' labels from the last back to the first: a round's label maps on through
        the later rounds; nodes labelled first in a later round (earlier labels) are kept as they are -#}
    {%- set ns.current = ns.labels[ns.rounds - 1] -%}
    {%- for k in range(ns.rounds - 2, -1, -1) -%}
        {% call statement('cc_compose') %}
            create or replace temp table {{ work_name }}__f{{ k }} as
            select x.n, coalesce(y.l, x.l) as l
            from {{ ns.labels[k] }} as x
            left join {{ ns.current }} as y on y.n = x.l
            union all
            select y.n, y.l
            from {{ ns.current }} as y
            anti join {{ ns.labels[k] }} as x on x.n = y.n
        {% endcall %}
        {%- set ns.current = prefix ~ '__f' ~ k -%}
    {%- endfor -%}
    {%- set seconds = (modules.datetime.datetime.now() - started).total_seconds() -%}
    {{ log('identity components: ' ~ work_name ~ ' ' ~ ns.rounds ~ ' rounds in ' ~ '%.3f' | format(seconds) ~ ' s', info=false) }}
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
            "select table_name from duckdb_tables() where database_name = 'temp'"
            ~ " and table_name like '" ~ work_name ~ "\\_\\_%' escape '\\'") -%}
        {%- for row in tables.rows -%}
            drop table if exists temp.main.{{ row[0] }};
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- Runs identity_connected_components on a table of (node_a, node_b) and writes its result to
    out_relation, so the component step can be checked on any graph (tests: long chains, ids in
    adversarial order). `dbt run-operation identity_components_into --args '{edges_relation: main.e,
    out_relation: main.out}'`. -#}
{% macro identity_components_into(edges_relation, out_relation) -%}
    {%- set components = identity_connected_components(
        'select node_a, node_b from ' ~ edges_relation, 'identity_components_into') -%}
    {% call statement('identity_components_into') %}
        create or replace table {{ out_relation }} as select * from {{ components }} as c
    {% endcall %}
    {%- if target.type == 'duckdb' -%}
        {% call statement('identity_components_into_cleanup') %}
            {{ duckdb__identity_drop_work_tables('identity_components_into') }}
        {% endcall %}
    {%- endif -%}
    {% do adapter.commit() %}
{%- endmacro %}

{#- A connection-local work table of `sql` for an incremental model to read, so the planner joins
    it by its real row count: a filtered scan of a large table (the records loaded since the last
    run) is estimated at a fifth of the table, and a join would then hash the wrong side (millions
    of rows instead of thousands). Returns the relation to select from; the model's post-hook
    identity_drop_work_tables(work_name) drops it. The portable default inlines the query. -#}
{% macro identity_work_table(work_name, suffix, sql) -%}
    {{ return(adapter.dispatch('identity_work_table', 'composable_cdp')(work_name, suffix, sql)) }}
{%- endmacro %}

{% macro default__identity_work_table(work_name, suffix, sql) -%}
    {{ return('(' ~ sql ~ ')') }}
{%- endmacro %}

{% macro duckdb__identity_work_table(work_name, suffix, sql) -%}
    {%- if not execute -%}{{ return('(' ~ sql ~ ')') }}{%- endif -%}
    {%- set relation = 'temp.main.' ~ work_name ~ '__' ~ suffix -%}
    {% call statement('identity_work_table_' ~ suffix) %}
        create or replace temp table {{ work_name }}__{{ suffix }} as {{ sql }}
    {% endcall %}
    {{ return(relation) }}
{%- endmacro %}
