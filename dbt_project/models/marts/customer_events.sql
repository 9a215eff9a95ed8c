-- The unified, typed timeline: web/app events, product orders, billing charges and support
-- tickets, each with the customer identity resolved it to, so a person's history is one query.
-- `revenue` is the amount that counts toward lifetime value (completed orders, succeeded and
-- unrefunded charges) and null otherwise, so every revenue trait reads one column. Records whose
-- parent identity could not map keep a null customer_id rather than vanish (a warn test counts them).
with

record_customers as (

    select * from {{ ref('int_identity__record_customers') }}

),

web_events as (

    select
        rc.customer_id,
        e.message_id as event_id,
        'events' as source,
        e.event_type,
        e.event_name,
        e.occurred_at,
        e.page_path,
        e.properties,
        cast(null as double) as amount,
        cast(null as varchar) as currency,
        cast(null as varchar) as status,
        cast(null as double) as revenue,
        'stg_events__events' as record_model,
        e.message_id as record_key

    from {{ ref('stg_events__events') }} as e
    left join record_customers as rc
        on rc.record_model = 'stg_events__events' and rc.record_key = e.message_id

),

orders as (

    -- orders belong to the product user who placed them
    select
        rc.customer_id,
        'app_order:' || o.order_id as event_id,
        'app' as source,
        'order' as event_type,
        'Order Placed' as event_name,
        o.ordered_at as occurred_at,
        cast(null as varchar) as page_path,
        cast(null as varchar) as properties,
        o.amount,
        o.currency,
        o.status,
        case when o.status = 'completed' then o.amount end as revenue,
        'stg_app__orders' as record_model,
        o.order_id as record_key

    from {{ ref('stg_app__orders') }} as o
    left join record_customers as rc
        on rc.record_model = 'stg_app__users' and rc.record_key = o.user_id

),

charges as (

    select
        rc.customer_id,
        'stripe_charge:' || c.charge_id as event_id,
        'stripe' as source,
        'charge' as event_type,
        'Charge Created' as event_name,
        c.charged_at as occurred_at,
        cast(null as varchar) as page_path,
        cast(null as varchar) as properties,
        c.amount,
        c.currency,
        -- a refund undoes the charge whatever its original status
        case when c.is_refunded then 'refunded' else c.status end as status,
        case when c.is_paid and not coalesce(c.is_refunded, false) then c.amount end as revenue,
        'stg_stripe__charges' as record_model,
        c.charge_id as record_key

    from {{ ref('stg_stripe__charges') }} as c
    left join record_customers as rc
        on rc.record_model = 'stg_stripe__customers' and rc.record_key = c.stripe_customer_id

),

tickets as (

    select
        rc.customer_id,
        'zendesk_ticket:' || t.ticket_id as event_id,
        'zendesk' as source,
        'ticket' as event_type,
        'Ticket Created' as event_name,
        t.created_at as occurred_at,
        cast(null as varchar) as page_path,
        cast(null as varchar) as properties,
        cast(null as double) as amount,
        cast(null as varchar) as currency,
        t.status,
        cast(null as double) as revenue,
        'stg_zendesk__tickets' as record_model,
        t.ticket_id as record_key

    from {{ ref('stg_zendesk__tickets') }} as t
    left join record_customers as rc
        on rc.record_model = 'stg_zendesk__users' and rc.record_key = t.zendesk_user_id

),

final as (

    select * from web_events
    union all
    select * from orders
    union all
    select * from charges
    union all
    select * from tickets

)

select * from final
