-- The unified profile: one row per customer_id with the survivorship-chosen attributes (each with
-- the source that won, `<attribute>_source`), identity facts, the latest consent per purpose and
-- every trait model's columns.
--
-- To add a trait: add a column to a trait model, or add a trait model and its name to
-- `trait_models` below; its columns appear here on the next build (see docs/analysts.md).

{#- profile attributes chosen by seeds/survivorship_rules.csv -#}
{%- set attributes = [
    'email', 'phone', 'user_id', 'first_name', 'last_name', 'plan', 'company_name',
    'lifecycle_stage',
] %}
{#- consent purposes: <purpose>_consent, <purpose>_consent_at, <purpose>_consent_source -#}
{%- set purposes = ['email_marketing', 'sms'] %}
{#- joined on customer_id; every column but customer_id becomes a profile column -#}
{%- set trait_models = [
    'trait_orders', 'trait_activity', 'trait_support', 'trait_rfm', 'trait_engagement',
    'trait_lifecycle',
] %}

with

spine as (

    select * from {{ ref('int_profiles__customer_spine') }}

),

survived as (

    select * from {{ ref('int_profiles__attributes_survived') }}

),

attributes as (

    select
        customer_id,
        {%- for attribute in attributes %}
        max(case when attribute = '{{ attribute }}' then value end) as {{ attribute }},
        max(case when attribute = '{{ attribute }}' then source end) as {{ attribute }}_source
        {%- if not loop.last %},{% endif %}
        {%- endfor %}

    from survived
    group by customer_id

),

identity_facts as (

    select
        customer_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        -- anonymous visitors are profiles too; this tells them apart from known people
        max(case when id_type <> 'anonymous_id' then 1 else 0 end) = 1 as is_identified,
        count(*) as identifier_count

    from {{ ref('customer_identifiers') }}
    group by customer_id

),

consent as (

    select * from {{ ref('int_profiles__consent_latest') }}

),

profile as (

    select
        spine.customer_id,
        {%- for attribute in attributes %}
        a.{{ attribute }},
        a.{{ attribute }}_source,
        {%- endfor %}
        i.first_seen_at,
        i.last_seen_at,
        coalesce(i.is_identified, false) as is_identified,
        coalesce(i.identifier_count, 0) as identifier_count,
        spine.source_count,
        spine.source_record_count,
        -- no recorded decision means no consent
        {%- for purpose in purposes %}
        coalesce(consent_{{ purpose }}.granted, false) as {{ purpose }}_consent,
        consent_{{ purpose }}.decided_at as {{ purpose }}_consent_at,
        consent_{{ purpose }}.source as {{ purpose }}_consent_source
        {%- if not loop.last %},{% endif %}
        {%- endfor %}

    from spine
    left join attributes as a on a.customer_id = spine.customer_id
    left join identity_facts as i on i.customer_id = spine.customer_id
    {%- for purpose in purposes %}
    left join consent as consent_{{ purpose }}
        on consent_{{ purpose }}.customer_id = spine.customer_id
        and consent_{{ purpose }}.purpose = '{{ purpose }}'
    {%- endfor %}

),

final as (

    select *
    from profile
    {%- for trait_model in trait_models %}
    left join {{ ref(trait_model) }} using (customer_id)
    {%- endfor %}

)

select * from final
