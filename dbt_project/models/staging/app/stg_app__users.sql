with

source as (

    select * from {{ source('raw_app', 'users') }}

),

renamed as (

    select
        cast(id as varchar) as user_id,
        email,
        phone,
        first_name,
        last_name,
        plan,
        marketing_opt_in,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
