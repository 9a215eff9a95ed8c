{{ config(
    tags=['segment'],
    meta={
        'owner': 'retention@composable-cdp.example',
        'description': 'Buyers who used to buy often or spend well (RFM frequency or monetary 3+) but have not bought lately (recency 1-2).',
    },
) }}

-- the classic RFM "at risk" cell: good customers slipping away
select
    customer_id,
    email,
    first_name,
    last_name,
    phone,
    rfm_score,
    last_order_at

from {{ ref('customers') }}
where recency_score <= 2
    and (frequency_score >= 3 or monetary_score >= 3)
