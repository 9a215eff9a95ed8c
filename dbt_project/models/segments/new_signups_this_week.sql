{{ config(
    tags=['segment'],
    meta={
        'owner': 'lifecycle@composable-cdp.example',
        'description': 'People who created their product account in the last 7 days (onboarding journey).',
    },
) }}

select
    customer_id,
    email,
    first_name,
    last_name,
    phone,
    signed_up_at

from {{ ref('customers') }}
where signed_up_at > {{ dbt.dateadd('day', -7, cdp_now()) }}
    and signed_up_at <= {{ cdp_now() }}
