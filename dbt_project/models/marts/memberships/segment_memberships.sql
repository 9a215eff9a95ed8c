-- Current members of every segment, with when their current spell began: what syncs and
-- activation read. The full past is in segment_membership_history.
with

history as (

    select * from {{ ref('segment_membership_history') }}

),

final as (

    select
        segment,
        customer_id,
        entered_at

    from history
    where exited_at is null

)

select * from final
