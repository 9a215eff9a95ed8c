-- Every consent decision any source recorded, one row per (source record, purpose): product
-- sign-up opt-ins, CRM opt-outs and preference-centre events. The profile keeps the latest decision
-- per purpose; this ledger keeps them all, for audits ("when and where did they say yes?").

{#- the purposes a consent event may carry under properties.categories, and their channel -#}
{%- set event_purposes = {'email_marketing': 'email', 'sms': 'sms'} %}

with

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

app_opt_ins as (

    -- the product's sign-up and settings checkbox; updated_at is when the account last changed
    select
        rc.customer_id,
        'email_marketing' as purpose,
        'email' as channel,
        u.marketing_opt_in as granted,
        coalesce(u.updated_at, u.created_at) as decided_at,
        'app' as source,
        'stg_app__users' as record_model,
        u.user_id as record_key

    from {{ ref('stg_app__users') }} as u
    inner join record_customers as rc
        on rc.record_model = 'stg_app__users' and rc.record_key = u.user_id
    where u.marketing_opt_in is not null

),

crm_opt_outs as (

    -- HubSpot stores the inverse: hs_email_optout = true means no marketing email
    select
        rc.customer_id,
        'email_marketing' as purpose,
        'email' as channel,
        not c.email_opt_out as granted,
        coalesce(c.updated_at, c.created_at) as decided_at,
        'hubspot' as source,
        'stg_hubspot__contacts' as record_model,
        c.hubspot_contact_id as record_key

    from {{ ref('stg_hubspot__contacts') }} as c
    inner join record_customers as rc
        on rc.record_model = 'stg_hubspot__contacts' and rc.record_key = c.hubspot_contact_id
    where c.email_opt_out is not null

),

consent_events as (

    select
        rc.customer_id,
        e.message_id,
        e.occurred_at,
        e.properties

    from {{ ref('stg_events__events') }} as e
    inner join record_customers as rc
        on rc.record_model = 'stg_events__events' and rc.record_key = e.message_id
    where e.event_type = 'track' and e.event_name = 'Consent Updated'

),

event_decisions as (

    {%- for purpose, channel in event_purposes.items() %}
    select
        customer_id,
        '{{ purpose }}' as purpose,
        '{{ channel }}' as channel,
        lower({{ json_get_text('properties', '$.categories.' ~ purpose) }}) = 'true' as granted,
        occurred_at as decided_at,
        'events' as source,
        'stg_events__events' as record_model,
        message_id as record_key
    from consent_events
    where {{ json_get_text('properties', '$.categories.' ~ purpose) }} is not null
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

unioned as (

    select * from app_opt_ins
    union all
    select * from crm_opt_outs
    union all
    select * from event_decisions

),

final as (

    select
        source || ':' || record_key || ':' || purpose as consent_id,
        customer_id,
        purpose,
        channel,
        granted,
        decided_at,
        source,
        record_model,
        record_key

    from unioned

)

select * from final
