"""Warehouse fixtures for the reverse-ETL tests, independent of the dbt models.

``marts.customers``, a segment and an activation model are written straight into a tmp DuckDB
from the generator's people, so the engine is tested on its own. Expected destination contents
are always derived from these tables with SQL, never written by hand.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from connectors.suppression import hash_identifier
from orchestration.demo.generator import DemoData
from reverse_etl.config import SyncConfig
from reverse_etl.state import connect

MODEL = "activation.sync_test__high_value"
FIELDS = {
    "email": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "ltv": "lifetime_value",
}


def customers_frame(demo: DemoData) -> pl.DataFrame:
    people = demo.people
    return pl.DataFrame(
        {
            "customer_id": [f"cus_{i:06d}" for i in people["_person_id"]],
            "email": people["email"],
            "phone": people["phone_e164"],
            "first_name": people["first_name"],
            "last_name": people["last_name"],
            "email_marketing_consent": people["email_consent"],
            "lifetime_value": (people["_person_id"] * 7 % 500).cast(pl.Float64),
            "plan": people["plan"],
        }
    )


def write_warehouse(db_path: Path, demo: DemoData) -> None:
    """marts.customers, segments.high_value_customers (every 3rd) and the activation model."""
    customers = customers_frame(demo)
    con = connect(db_path)
    try:
        con.execute("create schema if not exists marts; create schema if not exists segments")
        con.execute("create schema if not exists activation")
        con.register("_customers", customers.to_arrow())
        con.execute("create or replace table marts.customers as select * from _customers")
        con.execute(
            "create or replace table segments.high_value_customers as "
            "select customer_id, email, first_name, last_name, phone from marts.customers "
            "where cast(substr(customer_id, 5) as integer) % 3 = 0"
        )
        refresh_model(con)
    finally:
        con.close()


def refresh_model(con: duckdb.DuckDBPyConnection) -> None:
    """What dbt would rebuild: the activation model from the segment and the customers."""
    con.execute(
        f"create or replace table {MODEL} as "
        "select s.customer_id, s.email, s.first_name, s.last_name, s.phone, c.lifetime_value "
        "from segments.high_value_customers s join marts.customers c using (customer_id)"
    )


def expected_members(db_path: Path, purpose: str | None = "email_marketing") -> dict[str, dict]:
    """What the destination must hold: consented, unsuppressed model rows, mapped fields."""
    con = connect(db_path, read_only=True)
    try:
        consent = f"and c.{purpose}_consent" if purpose else ""
        rows = con.execute(
            f"select m.email, m.first_name, m.last_name, m.lifetime_value from {MODEL} m "
            f"join marts.customers c using (customer_id) where m.email is not null {consent}"
        ).fetchall()
    finally:
        con.close()
    return {r[0]: {"email": r[0], "firstname": r[1], "lastname": r[2], "ltv": r[3]} for r in rows}


def make_sync(destination: str, **meta) -> SyncConfig:
    name = meta.pop("name", f"test_{destination}")
    base = {
        "destination": destination,
        "mode": "mirror",
        "identity_key": "email",
        "fields": FIELDS,
        "purpose": "email_marketing",
        "model": MODEL,
    }
    base.update(meta)
    return SyncConfig.from_meta(name, base)


@pytest.fixture
def warehouse(small_demo: DemoData, cdp_env: Path) -> Path:
    write_warehouse(cdp_env, small_demo)
    return cdp_env


def sql(db_path: Path, query: str, params: list | None = None) -> list[tuple]:
    con = connect(db_path)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def break_emails(db_path: Path, n: int, mark: str = "#") -> list[str]:
    """Malform the emails of ``n`` consented members (``@`` -> ``mark``); returns them."""
    rows = sql(
        db_path,
        f"update {MODEL} m set email = replace(m.email, '@', '{mark}') from marts.customers c "
        "where c.customer_id = m.customer_id and c.email_marketing_consent and m.customer_id in "
        f"(select customer_id from {MODEL} m2 join marts.customers c2 using (customer_id) "
        f"where c2.email_marketing_consent order by customer_id limit {n}) returning m.email",
    )
    return [r[0] for r in rows]


def set_consent(db: Path, email: str, granted: bool) -> None:
    sql(
        db,
        "update marts.customers set email_marketing_consent = ? where email = ?",
        [granted, email],
    )


def suppress(db: Path, email: str) -> None:
    """Put ``email`` on the suppression list, as `cdp forget` does."""
    sql(
        db,
        "create table if not exists ops.suppression_list (id_type varchar, id_value_hash varchar)",
    )
    sql(
        db,
        "insert into ops.suppression_list values ('email', ?)",
        [hash_identifier("email", email)],
    )


def gate_out(db: Path, withdrawn: str, forgotten: str, leaver: str) -> None:
    """One member withdraws consent, one is suppressed, one leaves the segment keeping consent."""
    set_consent(db, withdrawn, False)
    suppress(db, forgotten)
    sql(db, "delete from segments.high_value_customers where email = ?", [leaver])
    con = connect(db)
    refresh_model(con)
    con.close()
