"""App connector: the product database (SQLite here, PostgreSQL for real), keyset-incremental."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from connectors.app import AppConnector
from connectors.ingest import ingest, ingest_stream
from orchestration.demo.sources import ISO_US, app_frame, write_app_sqlite
from tests.connectors.helpers import assert_raw_equals_source, rows, scalar


@pytest.fixture
def app_db(small_demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = write_app_sqlite(small_demo, tmp_path / "app.sqlite")
    monkeypatch.setenv("CDP_APP_DB_URL", url)
    return tmp_path / "app.sqlite"


def _iso(ts: dt.datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def test_sqlite_full_then_incremental(small_demo, cdp_env, app_db):
    results = ingest(sources=["app"])
    assert [(r.stream, r.status) for r in results] == [("users", "ok"), ("orders", "ok")]
    assert_raw_equals_source(cdp_env, small_demo, "app.users")
    assert_raw_equals_source(cdp_env, small_demo, "app.orders")
    assert [r.rows_read for r in ingest(sources=["app"])] == [0, 0]

    later = _iso(dt.datetime.now(dt.UTC))
    con = sqlite3.connect(app_db)
    con.execute("update users set plan = 'enterprise', updated_at = ? where id = 1001", [later])
    con.execute(
        "insert into users (id, email, plan, marketing_opt_in, created_at, updated_at) "
        "values (99999, 'new@example.com', 'free', 1, ?, ?)",
        [later, later],
    )
    con.commit()
    con.close()
    result = ingest_stream("app", "users")
    assert (result.rows_read, result.rows_loaded) == (2, 2)
    got = rows(cdp_env, "select id, plan from raw_app.users where id in (1001, 99999) order by id")
    assert got == [(1001, "enterprise"), (99999, "free")]
    assert scalar(cdp_env, "select count(*) from raw_app.users") == (
        small_demo.tables["app.users"].height + 1
    )


def test_ties_on_updated_at_across_page_boundaries_lose_nothing(cdp_env, tmp_path, monkeypatch):
    path = tmp_path / "ties.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table users (id integer primary key, email text, updated_at text)")
    stamp = "2026-01-01T00:00:00.000000+00:00"
    con.executemany(
        "insert into users values (?, ?, ?)", [(i, f"u{i}@x", stamp) for i in range(25)]
    )
    con.execute("create table orders (id integer primary key, updated_at text)")
    con.commit()
    monkeypatch.setenv("CDP_APP_DB_URL", f"sqlite:///{path}")
    monkeypatch.setattr(AppConnector, "page_rows", 7)
    monkeypatch.setenv("CDP_INGEST_BATCH_ROWS", "7")
    result = ingest_stream("app", "users")
    assert (result.rows_read, result.rows_loaded, result.pages) == (25, 25, 4)
    # a row that arrives later with the same timestamp but a higher id is still picked up
    con.execute("insert into users values (30, 'late@x', ?)", [stamp])
    con.commit()
    assert ingest_stream("app", "users").rows_loaded == 1
    assert scalar(cdp_env, "select count(distinct id) from raw_app.users") == 26
    # missing typed columns (no phone, no plan in this schema) are null, not an error
    assert scalar(cdp_env, "select count(*) from raw_app.users where plan is null") == 26


def test_unreachable_database_fails_with_variable_and_no_password(cdp_env, monkeypatch):
    monkeypatch.setenv("CDP_APP_DB_URL", "postgresql://app:s3cr3t-pw@127.0.0.1:1/app")
    results = ingest(sources=["app"])
    assert [r.status for r in results] == ["failed", "failed"]
    for r in results:
        assert "CDP_APP_DB_URL" in r.message
        assert "s3cr3t-pw" not in r.message
    logged = rows(cdp_env, "select message from ops.ingest_runs")
    assert all("s3cr3t-pw" not in m for (m,) in logged)


def test_unsupported_url_is_skipped_with_clear_message(cdp_env, monkeypatch):
    monkeypatch.setenv("CDP_APP_DB_URL", "mysql://u:pw@host/db")
    result = ingest(sources=["app"])[0]
    assert result.status == "skipped"
    assert "postgresql://" in result.message and "pw" not in result.message


# -- PostgreSQL, for real --------------------------------------------------------------------
def _psql(sql: str, db: str = "postgres") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["su", "postgres", "-c", f'psql -v ON_ERROR_STOP=1 -d {db} -qAtc "{sql}"'],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def postgres_url():
    if not shutil.which("pg_ctlcluster") or not shutil.which("su"):
        pytest.skip("PostgreSQL is not installed (no pg_ctlcluster)")
    if _psql("select 1").returncode != 0:
        subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True, timeout=60)
        if _psql("select 1").returncode != 0:
            pytest.skip("the local PostgreSQL 15 cluster could not be started")
    name = f"cdp_app_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    for sql in (
        f"create role {name} login password '{password}'",
        f"create database {name} owner {name}",
    ):
        proc = _psql(sql)
        assert proc.returncode == 0, proc.stderr
    yield f"postgresql://{name}:{password}@127.0.0.1:5432/{name}"
    _psql(f"drop database if exists {name} with (force)")
    _psql(f"drop role if exists {name}")


@pytest.mark.postgres
def test_postgres_full_then_incremental(small_demo, cdp_env, postgres_url, monkeypatch):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(
            "create table users (id bigint primary key, email text, phone text, first_name text,"
            " last_name text, plan text, marketing_opt_in boolean, created_at timestamptz,"
            " updated_at timestamptz)"
        )
        con.execute(
            "create table orders (id bigint primary key, user_id bigint, amount numeric(12,2),"
            " currency text, status text, created_at timestamptz, updated_at timestamptz)"
        )
        for table in ("users", "orders"):
            frame = small_demo.source(f"app.{table}")
            cols = ", ".join(frame.columns)
            with con.cursor().copy(f"copy {table} ({cols}) from stdin") as copy:
                for row in frame.iter_rows():
                    copy.write_row(row)
    monkeypatch.setenv("CDP_APP_DB_URL", postgres_url)
    results = ingest(sources=["app"])
    assert [r.status for r in results] == ["ok", "ok"], [r.message for r in results]
    assert_raw_equals_source(cdp_env, small_demo, "app.users")
    assert_raw_equals_source(cdp_env, small_demo, "app.orders")
    assert [r.rows_read for r in ingest(sources=["app"])] == [0, 0]
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("update orders set status = 'refunded', updated_at = now() where id = 500001")
    result = ingest_stream("app", "orders")
    assert (result.rows_read, result.rows_loaded) == (1, 1)
    assert scalar(cdp_env, "select status from raw_app.orders where id = 500001") == "refunded"
    assert scalar(cdp_env, "select count(*) from raw_app.orders") == (
        small_demo.tables["app.orders"].height
    )


def test_demo_sqlite_uses_one_timestamp_format(small_demo):
    stamps = app_frame(small_demo, "users")["updated_at"]
    assert stamps.str.len_chars().n_unique() == 1
    assert dt.datetime.strptime(stamps[0], ISO_US.replace("%.6f", ".%f"))
