-- Every consent decision any source recorded, one row per (source record, purpose): product
-- sign-up opt-ins, CRM opt-outs, preference-centre events and email-tool subscription status. The
-- profile keeps the latest decision per purpose; this ledger keeps them all, for audits ("when and
-- where did they say yes?").
--
-- Email tools (Mailchimp, Klaviyo), purpose email_marketing on channel email:
--   * an unsubscribe is a decision by the person: granted = false at the time the tool records
--     (Mailchimp `unsubscribed` at last_changed, Klaviyo UNSUBSCRIBED at consent_timestamp). An
--     unsubscribe our own consent-gated sync made repeats a withdrawal the warehouse already had,
--     so reading it back changes nothing;
--   * a subscription is a grant ONLY when it did not come through the tool's API: our reverse-ETL
--     syncs subscribe through the API, and their echo must not read back as consent. Mailchimp
--     records API writes as source `API - Generic`; Klaviyo as method `API` (our syncs also set
--     custom_method_detail `composable-cdp`). Sign-up forms, preference pages and imports count,
--     at the opt-in time (Mailchimp timestamp_opt, Klaviyo consent_timestamp). A Mailchimp member a
--     form added keeps that `source` when our sync re-subscribes it (consent given again), so a
--     Mailchimp opt-in within minutes of one of our syncs adding that address (ops.sync_row_results,
--     written by reverse_etl) is our echo too, not a grant;
--   * `cleaned` (bounced), `pending` (unconfirmed double opt-in), `transactional`, `archived` and
--     NEVER_SUBSCRIBED say nothing about consent: no row.

{#- the purposes a consent event may carry under properties.categories, and their channel -#}
{%- set event_purposes = {'email_marketing': 'email', 'sms': 'sms'} %}
{#- the sync audit tables exist once a sync has run; before that no echo can exist either -#}
{%- set sync_results, sync_runs = none, none %}
{%- if execute %}
{%- set sync_results = adapter.get_relation(this.database, 'ops', 'sync_row_results') %}
{%- set sync_runs = adapter.get_relation(this.database, 'ops', 'sync_runs') %}
{%- endif %}

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

our_mailchimp_adds as (

    -- every address our Mailchimp syncs added (and so subscribed), when; row_key is the sync's
    -- identity key, the email for every Mailchimp sync of this project
    {%- if sync_results is not none and sync_runs is not none %}
    select lower(trim(r.row_key)) as email, r."at" as added_at
    from {{ sync_results }} as r
    where r.operation = 'add' and r.status = 'success'
        and r.sync_name in (select sync_name from {{ sync_runs }} where destination = 'mailchimp')
    {%- else %}
    select cast(null as varchar) as email, cast(null as timestamp) as added_at
    where false
    {%- endif %}

),

mailchimp_status as (

    select
        rc.customer_id,
        'email_marketing' as purpose,
        'email' as channel,
        m.status = 'subscribed' as granted,
        case when m.status = 'subscribed'
            then coalesce(m.opted_in_at, m.last_changed_at)
            else m.last_changed_at
        end as decided_at,
        'mailchimp' as source,
        'stg_mailchimp__members' as record_model,
        m.mailchimp_member_key as record_key

    from {{ ref('stg_mailchimp__members') }} as m
    inner join record_customers as rc
        on rc.record_model = 'stg_mailchimp__members' and rc.record_key = m.mailchimp_member_key
    where m.status = 'unsubscribed'
        or (
            m.status = 'subscribed'
            and coalesce(m.signup_source, '') <> 'API - Generic'
            and not exists (
                select 1 from our_mailchimp_adds as a
                where a.email = lower(trim(m.email))
                    and m.opted_in_at
                    between {{ dbt.dateadd('minute', -10, 'a.added_at') }}
                    and {{ dbt.dateadd('minute', 10, 'a.added_at') }}
            )
        )

),

klaviyo_consent as (

    select
        rc.customer_id,
        'email_marketing' as purpose,
        'email' as channel,
        p.email_marketing_consent = 'SUBSCRIBED' as granted,
        coalesce(p.email_consent_at, p.updated_at) as decided_at,
        'klaviyo' as source,
        'stg_klaviyo__profiles' as record_model,
        p.klaviyo_profile_id as record_key

    from {{ ref('stg_klaviyo__profiles') }} as p
    inner join record_customers as rc
        on rc.record_model = 'stg_klaviyo__profiles' and rc.record_key = p.klaviyo_profile_id
    where p.email_marketing_consent = 'UNSUBSCRIBED'
        or (
            p.email_marketing_consent = 'SUBSCRIBED'
            and coalesce(p.email_consent_method, '') <> 'API'
            and coalesce(p.email_consent_method_detail, '') <> 'composable-cdp'
        )

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
    union all
    select * from mailchimp_status
    union all
    select * from klaviyo_consent

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
