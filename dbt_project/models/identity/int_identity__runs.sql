{{
    config(
        materialized='incremental',
        incremental_strategy='append',
    )
}}
-- depends_on: {{ ref('identity_id_registry') }}
-- depends_on: {{ ref('customer_identifiers') }}
-- depends_on: {{ ref('int_identity__record_customers') }}
-- One row per identity run that finished: written after every other identity model, with the
-- first pass's watermark. Downstream incremental models redo what the first pass rewrote since the
-- last row (identity_completed_watermark), so a run that died half way, after the components
-- were rewritten but before the customers were, is completed by the next run even when new
-- records arrived in between.
select
    {{ cdp_now() }} as finished_at,
    max(watermark) as watermark
from {{ ref('int_identity__components_unchecked') }}
