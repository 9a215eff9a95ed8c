with

source as (

    select * from {{ source('raw_zendesk', 'users') }}

),

renamed as (

    select
        cast(id as varchar) as zendesk_user_id,
        email,
        phone,
        name as full_name,
        role,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
