with

source as (

    select * from {{ source('raw_hubspot', 'contacts') }}

),

renamed as (

    select
        cast(id as varchar) as hubspot_contact_id,
        email,
        firstname as first_name,
        lastname as last_name,
        phone,
        company as company_name,
        lifecyclestage as lifecycle_stage,
        hs_email_optout as email_opt_out,
        cast(createdate as timestamp) as created_at,
        cast(lastmodifieddate as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
