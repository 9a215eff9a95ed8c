with

source as (

    select * from {{ source('raw_hubspot', 'companies') }}

),

renamed as (

    select
        cast(id as varchar) as hubspot_company_id,
        name as company_name,
        lower(domain) as domain,
        cast(createdate as timestamp) as created_at,
        cast(lastmodifieddate as timestamp) as updated_at,
        _loaded_at

    from source

)

select * from renamed
