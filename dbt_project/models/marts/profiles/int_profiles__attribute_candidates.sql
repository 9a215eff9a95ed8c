-- Every value any source holds for a profile attribute, one row per (customer, attribute, source
-- record), with when the source last saw it. Survivorship picks among these; keeping them all makes
-- every chosen value traceable to the record it came from.
--
-- Identifiers (email, phone, user_id) are the source records' values in identity's normalized form,
-- limited to what identity accepted (marts.customer_identifiers); descriptive attributes come from
-- the staging records.

{%- set placeholders = "('', 'n/a', 'na', 'none', 'null', 'unknown', '-')" %}

with

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

identifiers as (

    select * from {{ ref('customer_identifiers') }}
    where id_type in ('email', 'phone', 'user_id')

),

app_users as (

    select
        rc.customer_id,
        'app' as source,
        'stg_app__users' as record_model,
        u.user_id as record_key,
        coalesce(u.updated_at, u.created_at) as observed_at,
        u.first_name,
        u.last_name,
        cast(null as varchar) as full_name,
        u.plan,
        cast(null as varchar) as company_name,
        cast(null as varchar) as lifecycle_stage

    from {{ ref('stg_app__users') }} as u
    inner join record_customers as rc
        on rc.record_model = 'stg_app__users' and rc.record_key = u.user_id

),

hubspot_contacts as (

    select
        rc.customer_id,
        'hubspot' as source,
        'stg_hubspot__contacts' as record_model,
        c.hubspot_contact_id as record_key,
        coalesce(c.updated_at, c.created_at) as observed_at,
        c.first_name,
        c.last_name,
        cast(null as varchar) as full_name,
        cast(null as varchar) as plan,
        c.company_name,
        c.lifecycle_stage

    from {{ ref('stg_hubspot__contacts') }} as c
    inner join record_customers as rc
        on rc.record_model = 'stg_hubspot__contacts' and rc.record_key = c.hubspot_contact_id

),

-- billing and support hold one full name, split below
full_name_records as (

    select
        rc.customer_id,
        'stripe' as source,
        'stg_stripe__customers' as record_model,
        s.stripe_customer_id as record_key,
        s.created_at as observed_at,
        trim(s.full_name) as full_name

    from {{ ref('stg_stripe__customers') }} as s
    inner join record_customers as rc
        on rc.record_model = 'stg_stripe__customers' and rc.record_key = s.stripe_customer_id

    union all

    select
        rc.customer_id,
        'zendesk' as source,
        'stg_zendesk__users' as record_model,
        z.zendesk_user_id as record_key,
        coalesce(z.updated_at, z.created_at) as observed_at,
        trim(z.full_name) as full_name

    from {{ ref('stg_zendesk__users') }} as z
    inner join record_customers as rc
        on rc.record_model = 'stg_zendesk__users' and rc.record_key = z.zendesk_user_id

),

-- the first word of a full name is the first name, the rest the last name
split_names as (

    select
        customer_id,
        source,
        record_model,
        record_key,
        observed_at,
        split_part(full_name, ' ', 1) as first_name,
        nullif(trim(substr(full_name, length(split_part(full_name, ' ', 1)) + 1)), '')
            as last_name,
        full_name,
        cast(null as varchar) as plan,
        cast(null as varchar) as company_name,
        cast(null as varchar) as lifecycle_stage

    from full_name_records

),

records as (

    select * from app_users
    union all
    select * from hubspot_contacts
    union all
    select * from split_names

),

descriptive as (

    {%- set attributes = ['first_name', 'last_name', 'plan', 'company_name', 'lifecycle_stage'] %}
    {%- for attribute in attributes %}
    select
        customer_id,
        '{{ attribute }}' as attribute,
        trim({{ attribute }}) as value,
        source,
        record_model,
        record_key,
        observed_at
    from records
    where {{ attribute }} is not null
        and lower(trim({{ attribute }})) not in {{ placeholders }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

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
    where ri.id_type in ('email', 'phone', 'user_id')
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
