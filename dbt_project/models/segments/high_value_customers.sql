{{ config(
    tags=['segment'],
    meta={
        'owner': 'growth@composable-cdp.example',
        'description': 'Customers whose lifetime value across product orders and billing is 200 or more.',
    },
) }}

select
    customer_id,
    email,
    first_name,
    last_name,
    phone,
    lifetime_value,
    order_count

from {{ ref('customers') }}
where lifetime_value >= 200
