with

source as (

    select * from {{ source('raw_zendesk', 'tickets') }}

),

renamed as (

    select
        cast(id as varchar) as ticket_id,
        cast(requester_id as varchar) as zendesk_user_id,
        subject,
        status,
        priority,
        status in ('new', 'open', 'pending', 'hold') as is_open,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
