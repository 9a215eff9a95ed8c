with

source as (

    select * from {{ source('raw_events', 'events') }}

),

renamed as (

    select
        message_id,
        type as event_type,
        -- track calls carry `event`, page and screen calls a `name`
        coalesce(event, name) as event_name,
        cast(user_id as varchar) as user_id,
        anonymous_id,
        -- alias calls link a previous id (an anonymous id or an old user id) to userId
        {{ json_get_text('_record', '$.previousId') }} as previous_id,
        email,
        page_path,
        properties,
        cast("timestamp" as timestamp) as occurred_at,
        _loaded_at

    from source

)

select * from renamed
