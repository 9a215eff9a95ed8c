-- Who is in which segment right now: every enabled model tagged `segment` in this project,
-- found in the dbt graph, so adding a segment is one SQL file and nothing else.
--
-- Each segment's own SQL is rendered here rather than read from its table: dbt only orders a
-- model after the models it names at parse time, and the segment list is only known at run time.
-- Evaluating the SQL keeps this model correct whatever order the build runs in. Segments may use
-- the models below; one that needs another model makes dbt print the `depends_on` line to add here.
-- depends_on: {{ ref('customers') }}
-- depends_on: {{ ref('customer_events') }}
-- depends_on: {{ ref('consent_ledger') }}
-- depends_on: {{ ref('customer_identifiers') }}

{%- set segment_nodes = [] %}
{%- if execute %}
    {%- for node in graph.nodes.values() %}
        {%- if node.resource_type == 'model'
            and 'segment' in node.tags
            and node.package_name == project_name
            and node.config.get('enabled', true) %}
            {%- do segment_nodes.append(node) %}
        {%- endif %}
    {%- endfor %}
{%- endif %}
{%- set segment_nodes = segment_nodes | sort(attribute='name') %}

with

{%- for node in segment_nodes %}

segment_{{ loop.index }} as (

    select distinct
        cast('{{ node.name }}' as varchar) as segment,
        cast(segment_query.customer_id as varchar) as customer_id
    from (
        {{ render(node.raw_code) | trim | trim(';') }}
    ) as segment_query
    where segment_query.customer_id is not null

),
{%- endfor %}

unioned as (

    {%- for node in segment_nodes %}
    select * from segment_{{ loop.index }}
    union all
    {%- endfor %}
    -- typed and empty, so the model builds when no segment exists yet
    select cast(null as varchar) as segment, cast(null as varchar) as customer_id
    where 1 = 0

),

final as (

    select
        segment,
        customer_id,
        {{ cdp_now() }} as evaluated_at

    from unioned

)

select * from final
