{{ config(
    tags=['segment'],
    meta={
        'owner': 'support@composable-cdp.example',
        'description': 'Customers with 3+ tickets in the last 90 days or 2+ tickets still open: route to a success manager.',
    },
) }}

select
    customer_id,
    email,
    first_name,
    last_name,
    phone,
    tickets_90d,
    open_ticket_count

from {{ ref('customers') }}
where tickets_90d >= 3
    or open_ticket_count >= 2
