with

source as (

    select * from {{ source('raw_klaviyo', 'profiles') }}

),

renamed as (

    select
        id as klaviyo_profile_id,
        email,
        phone_number as phone,
        external_id,
        first_name,
        last_name,
        upper(email_marketing_consent) as email_marketing_consent,
        cast(email_marketing_consent_timestamp as timestamp) as email_consent_at,
        email_marketing_method as email_consent_method,
        email_marketing_custom_method_detail as email_consent_method_detail,
        cast(created as timestamp) as created_at,
        cast(updated as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
