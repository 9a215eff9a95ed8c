with

source as (

    select * from {{ source('raw_mailchimp', 'members') }}

),

renamed as (

    -- Mailchimp sends an empty merge field or reason as '', kept as null here
    select
        member_key as mailchimp_member_key,
        id as mailchimp_member_id,
        list_id as mailchimp_list_id,
        email_address as email,
        lower(status) as status,
        nullif(trim(fname), '') as first_name,
        nullif(trim(lname), '') as last_name,
        nullif(trim(phone), '') as phone,
        nullif(source, '') as signup_source,
        nullif(unsubscribe_reason, '') as unsubscribe_reason,
        cast(timestamp_opt as timestamp) as opted_in_at,
        cast(last_changed as timestamp) as last_changed_at,
        cast(coalesce(timestamp_opt, last_changed) as timestamp) as first_seen_at,
        _loaded_at

    from source

)

select * from renamed
