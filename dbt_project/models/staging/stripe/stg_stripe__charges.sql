with

source as (

    select * from {{ source('raw_stripe', 'charges') }}

),

renamed as (

    select
        cast(id as varchar) as charge_id,
        cast(customer as varchar) as stripe_customer_id,
        -- Stripe amounts are in the currency's smallest unit
        cast(amount as double) / 100.0 as amount,
        lower(currency) as currency,
        status,
        paid as is_paid,
        refunded as is_refunded,
        cast(created as timestamp) as charged_at,
        _loaded_at

    from source

)

select * from renamed
