{{
    config(
        materialized='incremental',
        unique_key=['record_id'],
        incremental_strategy='delete+insert',
        post_hook=[
            "{{ identity_drop_work_tables('int_identity__record_nodes') }}",
            "{{ identity_drop_lost_versions() }}",
        ],
    )
}}
-- Every usable identifier of every source record, with its graph key (node_id) and its type's
-- priority (the normalized value itself is in int_identity__identifiers). Rows whose raw value is
-- not usable stay behind (see identity_quarantine). Narrow on purpose: a record is its 64-bit
-- record_id here (its model and key are in int_identity__record_identifiers and
-- int_identity__record_customers), so the graph models never read millions of key strings.
{%- set new_records_sql %}
    select *, {{ identity_node_id('id_type', 'raw_value') }} as raw_key
    from {{ ref('int_identity__record_identifiers') }}
    where id_type is not null
    {%- if is_incremental() %}
        and loaded_at > {{ identity_watermark(this, 'loaded_at') }}
    {%- endif %}
{%- endset %}

with

-- incremental: the records loaded since the last run, as a work table (its real size lets the
-- join below hash these few rows, not the millions of normalized values)
record_identifiers as (

    {%- if is_incremental() %}
    select * from {{ identity_work_table('int_identity__record_nodes', 'new', new_records_sql) }}
    {%- else %}
    {{ new_records_sql }}
    {%- endif %}

),

-- incremental: only the values these records hold (the join then hashes the few new records'
-- values, not the millions of normalized ones)
normalized as (

    select * from {{ ref('int_identity__normalized_values') }}
    where id_value is not null
    {%- if is_incremental() %}
        and raw_key in (select raw_key from record_identifiers)
    {%- endif %}

),

{% if is_incremental() %}
-- records loaded before (int_identity__record_reloads found them): a reload replaces their rows,
-- whose identifiers and links downstream models already counted (they recount those instead of
-- adding the new rows to them)
reloaded as (

    select record_id
    from {{ ref('int_identity__record_reloads') }}
    where loaded_at > {{ identity_watermark(this, 'loaded_at') }}

),
{% endif %}

final as (

    select
        r.source,
        r.record_id,
        r.seen_at,
        r.first_seen_at,
        r.loaded_at,
        n.id_type,
        n.node_id,
        {{ identity_priority('n.id_type') }} as priority,
        {%- if is_incremental() %}
        r.record_id in (select record_id from reloaded) as is_reload
        {%- else %}
        false as is_reload
        {%- endif %}

    from record_identifiers as r
    -- by the raw value's integer key (unique: tested on int_identity__normalized_values)
    inner join normalized as n
        on n.raw_key = r.raw_key

)

select * from final
