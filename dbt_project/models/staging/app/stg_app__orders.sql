with

source as (

    select * from {{ source('raw_app', 'orders') }}

),

renamed as (

    select
        cast(id as varchar) as order_id,
        cast(user_id as varchar) as user_id,
        cast(amount as double) as amount,
        lower(currency) as currency,
        status,
        cast(created_at as timestamp) as ordered_at,
        cast(updated_at as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
