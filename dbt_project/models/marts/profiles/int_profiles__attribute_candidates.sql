-- Every value any source holds for a profile attribute, one row per (customer, attribute, value,
-- source record), with when the source last saw it. Survivorship picks among these; keeping them all
-- makes every chosen value traceable to a record that holds it.
--
-- Identifiers (email, phone, user_id) are the source records' values in identity's normalized form,
-- limited to what identity accepted (marts.customer_identifiers); descriptive attributes come from
-- the staging records.

{%- set placeholders = "('', 'n/a', 'na', 'none', 'null', 'unknown', '-')" %}
{%- set identifier_types = "('email', 'phone', 'user_id')" %}

with

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

identifiers as (

    select * from {{ ref('customer_identifiers') }}
    where id_type in {{ identifier_types }}

),

app_users as (

    select
        'app' as source,
        'stg_app__users' as record_model,
        user_id as record_key,
        coalesce(updated_at, created_at) as observed_at,
        first_name,
        last_name,
        cast(null as varchar) as full_name,
        plan,
        cast(null as varchar) as company_name,
        cast(null as varchar) as lifecycle_stage

    from {{ ref('stg_app__users') }}

),

hubspot_contacts as (

    select
        'hubspot' as source,
        'stg_hubspot__contacts' as record_model,
        hubspot_contact_id as record_key,
        coalesce(updated_at, created_at) as observed_at,
        first_name,
        last_name,
        cast(null as varchar) as full_name,
        cast(null as varchar) as plan,
        company_name,
        lifecycle_stage

    from {{ ref('stg_hubspot__contacts') }}

),

-- billing and support hold one full name, split below
stripe_customers as (

    select
        'stripe' as source,
        'stg_stripe__customers' as record_model,
        stripe_customer_id as record_key,
        created_at as observed_at,
        cast(null as varchar) as first_name,
        cast(null as varchar) as last_name,
        trim(full_name) as full_name,
        cast(null as varchar) as plan,
        cast(null as varchar) as company_name,
        cast(null as varchar) as lifecycle_stage

    from {{ ref('stg_stripe__customers') }}

),

zendesk_users as (

    select
        'zendesk' as source,
        'stg_zendesk__users' as record_model,
        zendesk_user_id as record_key,
        coalesce(updated_at, created_at) as observed_at,
        cast(null as varchar) as first_name,
        cast(null as varchar) as last_name,
        trim(full_name) as full_name,
        cast(null as varchar) as plan,
        cast(null as varchar) as company_name,
        cast(null as varchar) as lifecycle_stage

    from {{ ref('stg_zendesk__users') }}

),

source_records as (

    select * from app_users
    union all
    select * from hubspot_contacts
    union all
    select * from stripe_customers
    union all
    select * from zendesk_users

),

records as (

    select
        rc.customer_id,
        r.source,
        r.record_model,
        r.record_key,
        r.observed_at,
        -- the first word of a full name is the first name, the rest the last name
        coalesce(r.first_name, split_part(r.full_name, ' ', 1)) as first_name,
        coalesce(
            r.last_name,
            nullif(trim(substr(r.full_name, length(split_part(r.full_name, ' ', 1)) + 1)), '')
        ) as last_name,
        r.plan,
        r.company_name,
        r.lifecycle_stage

    from source_records as r
    inner join record_customers as rc
        on rc.record_model = r.record_model and rc.record_key = r.record_key

),

-- one row per (record, attribute) in a single pass over the records
{%- set attributes = ['first_name', 'last_name', 'plan', 'company_name', 'lifecycle_stage'] %}
attribute_names as (

    {%- for attribute in attributes %}
    select '{{ attribute }}' as attribute
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

unpivoted as (

    select
        r.customer_id,
        a.attribute,
        trim(case a.attribute
            {%- for attribute in attributes %}
            when '{{ attribute }}' then r.{{ attribute }}
            {%- endfor %}
        end) as value,
        r.source,
        r.record_model,
        r.record_key,
        r.observed_at

    from records as r
    cross join attribute_names as a

),

descriptive as (

    select * from unpivoted
    where value is not null
        and lower(value) not in {{ placeholders }}

),

-- identifiers as each source record held them, in identity's normalized form; only values identity
-- accepted for this customer (not junk, not quarantined over a per-customer limit) are candidates
record_identifiers as (

    select
        rc.customer_id,
        ri.id_type as attribute,
        nv.id_value as value,
        ri.source,
        ri.record_model,
        ri.record_key,
        ri.seen_at as observed_at

    from {{ ref('int_identity__record_identifiers') }} as ri
    inner join {{ ref('int_identity__normalized_values') }} as nv
        on nv.id_type = ri.id_type and nv.raw_value = ri.raw_value
    inner join record_customers as rc
        on rc.record_model = ri.record_model and rc.record_key = ri.record_key
    where ri.id_type in {{ identifier_types }}
        and nv.invalid_reason is null

),

-- one row per (customer, identifier, source record model): an event stream repeats the same
-- user_id on every event, and survivorship only needs the latest sighting and one record holding it
identifier_candidates as (

    select
        r.customer_id,
        r.attribute,
        r.value,
        r.source,
        r.record_model,
        max(r.record_key) as record_key,
        max(r.observed_at) as observed_at

    from record_identifiers as r
    inner join identifiers as i
        on i.customer_id = r.customer_id
        and i.id_type = r.attribute
        and i.id_value = r.value
    group by r.customer_id, r.attribute, r.value, r.source, r.record_model

),

final as (

    select * from descriptive
    union all
    select * from identifier_candidates

)

select * from final
