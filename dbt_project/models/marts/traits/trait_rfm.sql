-- RFM: recency, frequency and monetary quintiles (1 low .. 5 high) among customers who bought,
-- the classic way to rank buyers. Ties break on customer_id so the scores are deterministic.
-- Non-buyers get null scores: they are not "1", they are not ranked.
with

orders as (

    select * from {{ ref('trait_orders') }}

),

buyers as (

    select
        customer_id,
        ntile(5) over (order by last_order_at, customer_id) as recency_score,
        ntile(5) over (order by order_count, customer_id) as frequency_score,
        ntile(5) over (order by lifetime_value, customer_id) as monetary_score

    from orders
    where order_count > 0

),

final as (

    select
        orders.customer_id,
        b.recency_score,
        b.frequency_score,
        b.monetary_score,
        cast(b.recency_score as varchar)
        || cast(b.frequency_score as varchar)
        || cast(b.monetary_score as varchar) as rfm_score

    from orders
    left join buyers as b on b.customer_id = orders.customer_id

)

select * from final
