-- Support traits from the help desk: how much help a customer needs and whether some is pending.
with

spine as (

    select customer_id from {{ ref('int_profiles__customer_spine') }}

),

tickets as (

    select * from {{ ref('customer_events') }}
    where event_type = 'ticket' and customer_id is not null

),

per_customer as (

    select
        customer_id,
        count(*) as ticket_count,
        -- open in Zendesk terms: new, open, pending or on hold
        sum(case when status in ('new', 'open', 'pending', 'hold') then 1 else 0 end)
            as open_ticket_count,
        sum(case when occurred_at > {{ dbt.dateadd('day', -90, cdp_now()) }} then 1 else 0 end)
            as tickets_90d,
        max(occurred_at) as last_ticket_at

    from tickets
    group by customer_id

),

final as (

    select
        spine.customer_id,
        coalesce(p.ticket_count, 0) as ticket_count,
        coalesce(p.open_ticket_count, 0) as open_ticket_count,
        coalesce(p.tickets_90d, 0) as tickets_90d,
        p.last_ticket_at

    from spine
    left join per_customer as p on p.customer_id = spine.customer_id

)

select * from final
