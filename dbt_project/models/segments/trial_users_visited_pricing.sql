{{ config(
    tags=['segment'],
    meta={
        'owner': 'sales@composable-cdp.example',
        'description': 'Trial-plan users who viewed the pricing page in the last 30 days: ready for a sales touch.',
    },
) }}

with

pricing_views as (

    select customer_id, max(occurred_at) as last_pricing_view_at
    from {{ ref('customer_events') }}
    where event_type = 'page'
        and page_path = '/pricing'
        and occurred_at > {{ dbt.dateadd('day', -30, cdp_now()) }}
        and occurred_at <= {{ cdp_now() }}
    group by customer_id

)

select
    c.customer_id,
    c.email,
    c.first_name,
    c.last_name,
    c.phone,
    p.last_pricing_view_at

from {{ ref('customers') }} as c
inner join pricing_views as p on p.customer_id = c.customer_id
where c.plan = 'trial'
