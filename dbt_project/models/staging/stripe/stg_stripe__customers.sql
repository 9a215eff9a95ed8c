with

source as (

    select * from {{ source('raw_stripe', 'customers') }}

),

renamed as (

    select
        cast(id as varchar) as stripe_customer_id,
        email,
        name as full_name,
        phone,
        -- the app tags its Stripe customers with metadata.user_id
        cast(user_id as varchar) as user_id,
        cast(created as timestamp) as created_at,
        _loaded_at

    from source

)

select * from renamed
