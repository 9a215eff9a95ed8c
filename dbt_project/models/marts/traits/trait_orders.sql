-- Purchase traits over both revenue streams: product orders and billing charges. Only what was
-- actually earned counts (completed orders; succeeded, unrefunded charges: customer_events.revenue).
with

spine as (

    select customer_id from {{ ref('int_profiles__customer_spine') }}

),

purchases as (

    select * from {{ ref('customer_events') }}
    where revenue is not null and customer_id is not null

),

per_customer as (

    select
        customer_id,
        count(*) as order_count,
        sum(case when event_type = 'order' then 1 else 0 end) as product_order_count,
        sum(case when event_type = 'charge' then 1 else 0 end) as billing_charge_count,
        sum(revenue) as lifetime_value,
        min(occurred_at) as first_order_at,
        max(occurred_at) as last_order_at

    from purchases
    group by customer_id

),

final as (

    select
        spine.customer_id,
        coalesce(p.order_count, 0) as order_count,
        coalesce(p.product_order_count, 0) as product_order_count,
        coalesce(p.billing_charge_count, 0) as billing_charge_count,
        round(coalesce(p.lifetime_value, 0), 2) as lifetime_value,
        round(p.lifetime_value / p.order_count, 2) as average_order_value,
        p.first_order_at,
        p.last_order_at

    from spine
    left join per_customer as p on p.customer_id = spine.customer_id

)

select * from final
