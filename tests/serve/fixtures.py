"""Synthetic serving marts: the four tables the snapshot exports, at any size, in SQL.

The marts are built by other packages; these stand-ins have their documented columns plus an
extra one each (the snapshot must carry columns it does not know). Values are functions of the
row number, so a test derives its expectations from the same inputs it built.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

HIGH_VALUE = 200.0


def build_marts(db_path: str | Path, n_customers: int, events_per_customer: int = 5) -> None:
    """Create marts.customers, customer_identifiers, segment_memberships, customer_events."""
    con = duckdb.connect(str(db_path))
    try:
        con.execute("create schema if not exists marts")
        con.execute(
            f"""
            create or replace table marts.customers as
            select
                'cus_' || lpad(cast(i as varchar), 7, '0') as customer_id,
                'person' || i || '@example.com' as email,
                '+1555' || lpad(cast(i as varchar), 7, '0') as phone,
                'First' || i as first_name,
                'Last' || i as last_name,
                cast((i * 37) % 1000 as double) as lifetime_value,
                (i * 7) % 13 as order_count,
                i % 2 = 0 as email_marketing_opt_in,
                timestamp '2026-01-01' + to_minutes(i) as first_seen_at,
                timestamp '2026-10-01' + to_minutes(i) as last_seen_at,
                'extra-' || i as some_new_column
            from range(1, {int(n_customers)} + 1) as t(i)
            """
        )
        con.execute(
            """
            create or replace table marts.customer_identifiers as
            with ids as (
                select customer_id, 'email' as id_type, email as id_value from marts.customers
                union all
                select customer_id, 'phone', phone from marts.customers
                union all
                select customer_id, 'user_id', cast(cast(substr(customer_id, 5) as int) as varchar)
                from marts.customers
                union all
                select customer_id, 'anonymous_id', 'anon-' || substr(customer_id, 5)
                from marts.customers
            )
            select
                customer_id, id_type, id_value,
                timestamp '2026-01-01' as first_seen_at,
                timestamp '2026-10-01' as last_seen_at,
                ['app'] as sources,
                true as extra_flag
            from ids
            """
        )
        con.execute(
            f"""
            create or replace table marts.segment_memberships as
            select 'high_value_customers' as segment, customer_id,
                timestamp '2026-10-15' as entered_at, 'x' as extra
            from marts.customers where lifetime_value >= {HIGH_VALUE}
            union all
            select 'newsletter', customer_id, timestamp '2026-10-16', 'x'
            from marts.customers where email_marketing_opt_in
            """
        )
        con.execute(
            f"""
            create or replace table marts.customer_events as
            select
                c.customer_id,
                'evt-' || c.customer_id || '-' || e.j as event_id,
                'events' as source,
                'page' as event_type,
                'Viewed' as event_name,
                timestamp '2026-10-01' + to_hours(e.j) as occurred_at,
                '/page/' || e.j as page_path,
                '{{"n": ' || e.j || '}}' as properties
            from marts.customers as c, range(1, {int(events_per_customer)} + 1) as e(j)
            """
        )
    finally:
        con.close()


def customer_number(customer_id: str) -> int:
    return int(customer_id.removeprefix("cus_"))
