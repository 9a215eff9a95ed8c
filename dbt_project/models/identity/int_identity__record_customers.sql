{{
    config(
        materialized='incremental',
        unique_key=['record_id'],
        pre_hook="{{ identity_rebuild_reset() }}",
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook="{% if identity_incremental() %}update {{ this }} set customer_key = {{ identity_key('customer_id') }} where customer_key is null{% else %}select 1{% endif %}",
    )
}}
{%- set incremental_run = identity_incremental() %}
-- depends_on: {{ ref('int_identity__components_unchecked') }}
-- Every source record of every identity-bearing model and its customer: the customer of the
-- record's strongest identifier that was not held back. A record whose only identifiers are a
-- shared device's anonymous ids goes to the customer who logged in on it in the same session
-- (int_identity__session_attribution). Any other record with no such identifier (none at all,
-- only junk, a shared device outside any session) is a customer of its own, minted from its record
-- key: a shared identifier must not join two people's records. attribution says which rule
-- applied: identifier, session or own. Profiles join staging rows to customers through this model.
-- Incremental runs redo the records loaded since the last run and every record holding an
-- identifier whose component was recomputed, and write the rows that changed. record_id (the
-- 64-bit hash of model and key the identity models join on) is the key. customer_key is a 64-bit
-- key of customer_id: runs compare customers by it instead of reading millions of strings (a table
-- from before it gets the column on its next run and its values after it).
{%- set new_since = identity_watermark(this, 'loaded_at') if incremental_run else '' %}
with

{% if incremental_run %}
-- the records whose customer may have changed (their names are not needed to find out)
affected as (

    select record_id
    from {{ ref('int_identity__record_nodes') }}
    where node_id in ({{ identity_touched_nodes(regrouped_only=true) }})
    union
    -- session attribution is rebuilt whole: redo the records whose session customer changed (a
    -- new login claims older views of its device, a merge renames the customer) or that gained or
    -- lost one. Both sides are session rows only (a small share), compared as sets.
    select record_id
    from (
        (
            select record_id, customer_id
            from {{ ref('int_identity__session_attribution') }}
            {{ cdp_except() }}
            select record_id, customer_id
            from {{ this }}
            where attribution = 'session'
        )
        union all
        (
            select record_id, customer_id
            from {{ this }}
            where attribution = 'session'
            {{ cdp_except() }}
            select record_id, customer_id
            from {{ ref('int_identity__session_attribution') }}
        )
    ) as d

),
{% endif %}

-- every record's names, once per record (grouped by the integer record_id: three times faster than
-- by the strings; every row of a record carries the same names). Incremental: the records loaded
-- since the last run, a few row groups at the table's end.
records as materialized (

    select
        record_id,
        any_value(source) as source,
        any_value(record_model) as record_model,
        any_value(record_key) as record_key,
        max(loaded_at) as loaded_at
    from {{ ref('int_identity__record_identifiers') }}
    {%- if incremental_run %}
    where loaded_at > {{ new_since }}
    {%- endif %}
    group by record_id

),

-- the records to resolve, with their identifiers' graph keys
record_nodes as {% if incremental_run %}materialized {% endif %}(

    select rn.record_id, rn.node_id
    from {{ ref('int_identity__record_nodes') }} as rn
    {%- if incremental_run %}
    where rn.record_id in (select record_id from affected union select record_id from records)
    {%- endif %}

),

components as (

    select * from {{ ref('int_identity__components') }}

),

customer_ids as (

    select * from {{ ref('int_identity__customer_ids') }}

),

-- records of shared devices attributed to the customer who logged in in the same session
sessions as (

    select record_id, customer_id
    from {{ ref('int_identity__session_attribution') }}

),

-- the record's identifiers that were not held back are linked by the record itself, so they share
-- one component: any of them names the customer (an aggregate, not a window over every row)
{%- if incremental_run %}
-- incremental: most affected records hold a touched identifier, found among the few touched
-- components; only the others are looked up among all components
touched_components as materialized (

    {{ identity_touched_components() }}

),

hit as (

    select rn.record_id, min(c.component_id) as component_id
    from record_nodes as rn
    inner join touched_components as c on c.node_id = rn.node_id
    group by rn.record_id

),

-- materialized, so the join below sees only these rows, not every affected record's
missed as materialized (

    select rn.record_id, rn.node_id
    from record_nodes as rn
    where rn.record_id not in (select record_id from hit)

),
{%- endif %}

-- incremental: the touched hits, and the others looked up among all components; a full build looks
-- every record up there
best_node as (
    {%- if incremental_run %}

    select * from hit
    union all
    {%- endif %}

    select m.record_id, min(c.component_id) as component_id
    from {% if incremental_run %}missed{% else %}record_nodes{% endif %} as m
    inner join components as c on c.node_id = m.node_id
    where c.holdback_reason is null
    group by m.record_id

),

{% if incremental_run %}
-- the customers of those components only (joining all of them would hash every customer_id)
needed_customer_ids as materialized (

    select ci.component_id, ci.customer_id
    from customer_ids as ci
    where ci.component_id in (select component_id from best_node)

),
{% endif %}

-- each record's customer by an identifier or a session; null: a customer of its own
resolved as (

    select
        r.record_id,
        coalesce(ci.customer_id, s.customer_id) as customer_id,
        case
            when ci.customer_id is not null then 'identifier'
            when s.customer_id is not null then 'session'
            else 'own'
        end as attribution
    {%- if incremental_run %}
    from (select record_id from affected union select record_id from records) as r
    {%- else %}
    from records as r
    {%- endif %}
    left join best_node as b on b.record_id = r.record_id
    left join {% if incremental_run %}needed_customer_ids{% else %}customer_ids{% endif %} as ci
        on ci.component_id = b.component_id
    left join sessions as s on s.record_id = r.record_id

),

{% if incremental_run %}
-- only what changed: most redone records keep their customer, and rewriting them would cost a
-- delete, an insert and a checkpoint of rows that are already right. A record of its own keeps
-- the id minted from its unchanged key. Compared on narrow columns; names are read only for the
-- rows written.
{%- set has_key = 'customer_key' in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) if execute else true %}
previous as materialized (

    select
        p.record_id,
        {% if has_key %}p.customer_key{% else %}{{ identity_key('p.customer_id') }}{% endif %} as customer_key,
        p.attribution
    from {{ this }} as p
    where p.record_id in (select record_id from resolved)

),

changed as materialized (

    select r.*
    from resolved as r
    left join previous as p on p.record_id = r.record_id
    where r.record_id in (select record_id from records)
        or p.record_id is null
        or p.attribution <> r.attribution
        or (r.attribution <> 'own' and p.customer_key <> {{ identity_key('r.customer_id') }})

),

names as (

    select * from records
    union all
    select p.record_id, p.source, p.record_model, p.record_key, p.loaded_at
    from {{ this }} as p
    where p.record_id in (select record_id from changed)
        and p.record_id not in (select record_id from records)

),
{% endif %}

named as (

    select
        r.record_id,
        n.source,
        n.record_model,
        n.record_key,
        coalesce(
            r.customer_id,
            {{ identity_mint_customer_id("'record:' || n.record_model || ':' || n.record_key") }}
        ) as customer_id,
        r.attribution = 'own' as is_unidentified,
        r.attribution,
        n.loaded_at
    {%- if incremental_run %}
    from changed as r
    inner join names as n on n.record_id = r.record_id
    {%- else %}
    from resolved as r
    inner join records as n on n.record_id = r.record_id
    {%- endif %}

),

final as (

    select *, {{ identity_key('customer_id') }} as customer_key
    from named

)

select * from final
