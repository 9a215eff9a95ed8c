-- Session attribution on shared devices, as product-analytics tools do it. A record whose only
-- identifiers are anonymous ids held back as shared (a family device: the id was seen with two
-- user ids) identifies nobody by itself; it belongs to whoever logged in on that device in the same
-- session: a record carrying that anonymous id and a user id that resolves to a customer, at most
-- var identity_session_window_minutes before or after it. Of the logins next to it on the device's
-- timeline (the last before, the first after) those within the window must all be one customer's;
-- two people's make it a guess, left alone. Only the record is attributed: the shared anonymous id
-- stays out of the customer's identifiers and no two customers merge. Records with no login in the
-- window stay customers of their own (int_identity__record_customers).
-- Rebuilt whole on every run: it reads only the records of shared devices, a small share, so it
-- always equals a full rebuild; int_identity__record_customers redoes the records whose
-- attribution changed (a new login can claim older page views of its device).
{%- set window_minutes = var('identity_session_window_minutes', 30) | int %}

with

devices as (

    select node_id
    from {{ ref('int_identity__components') }}
    where holdback_reason = 'shared_identifier'

),

-- every record seen on a shared device, and when (records by their record_id alone: their model
-- and key are in int_identity__record_customers)
device_records as materialized (

    select rn.record_id, rn.node_id, rn.seen_at
    from {{ ref('int_identity__record_nodes') }} as rn
    where rn.id_type = 'anonymous_id'
        and rn.node_id in (select node_id from devices)

),

-- all identifiers of those records, with what identity made of each
device_record_nodes as (

    select rn.record_id, rn.id_type, c.component_id, c.holdback_reason
    from {{ ref('int_identity__record_nodes') }} as rn
    inner join {{ ref('int_identity__components') }} as c on c.node_id = rn.node_id
    where rn.record_id in (select record_id from device_records)

),

-- records that carry nothing but shared anonymous ids: the ones to attribute
anonymous_records as (

    select record_id
    from device_record_nodes
    group by record_id
    having min(case
        when id_type = 'anonymous_id' and holdback_reason = 'shared_identifier' then 1 else 0
    end) = 1

),

-- logins on a device: records with a user id that resolves to a customer
logins as (

    select d.record_id, ci.customer_id
    from device_record_nodes as d
    inner join {{ ref('int_identity__customer_ids') }} as ci on ci.component_id = d.component_id
    where d.id_type = 'user_id' and d.holdback_reason is null

),

candidates as (

    select dr.*
    from device_records as dr
    inner join anonymous_records as a on a.record_id = dr.record_id

),

login_times as (

    select dr.node_id, dr.seen_at, dr.record_id as login_record_id, l.customer_id
    from device_records as dr
    inner join logins as l on l.record_id = dr.record_id

),

-- each device's records in time order: for every view the last login at or before it and the
-- first at or after it (window functions, not a join of every view with every login of its device,
-- so a kiosk with thousands of users stays n log n)
timeline as (

    select node_id, seen_at, record_id, cast(null as timestamp) as login_at
    from candidates
    union all
    select node_id, seen_at, null, seen_at
    from login_times

),

neighbours as (

    select
        record_id,
        node_id,
        extract(epoch from seen_at) as seen_epoch,
        max(login_at) over (
            partition by node_id order by seen_at
            range between unbounded preceding and current row
        ) as login_before,
        min(login_at) over (
            partition by node_id order by seen_at
            range between current row and unbounded following
        ) as login_after
    from timeline

),

-- the logins next to the view on either side of its device's timeline
sides as (

    select record_id, node_id, seen_epoch, login_before as login_at
    from neighbours
    where record_id is not null and login_before is not null
    union all
    select record_id, node_id, seen_epoch, login_after
    from neighbours
    where record_id is not null and login_after is not null

),

in_window as (

    select
        s.record_id,
        l.customer_id,
        l.login_record_id as attributed_via_record_id,
        s.node_id as session_node_id,
        l.seen_at as login_at,
        abs(extract(epoch from l.seen_at) - s.seen_epoch) as seconds_apart
    from sides as s
    inner join login_times as l on l.node_id = s.node_id and l.seen_at = s.login_at
    where abs(extract(epoch from l.seen_at) - s.seen_epoch) <= {{ window_minutes * 60 }}

),

-- two people logged in next to the view within the window: whose view it was is a guess, and a
-- guess would put one person's record in another's profile, so it stays a customer of its own
unambiguous as (

    select record_id
    from in_window
    group by record_id
    having count(distinct customer_id) = 1

),

final as (

    select
        record_id,
        customer_id,
        attributed_via_record_id,
        session_node_id,
        seconds_apart
    from (
        select
            *,
            row_number() over (
                partition by record_id
                order by seconds_apart, login_at, attributed_via_record_id
            ) as nearest
        from in_window
        where record_id in (select record_id from unambiguous)
    ) as ranked
    where nearest = 1

)

select * from final
