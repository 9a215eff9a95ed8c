"""The loader: typing, quarantine, upserts, suppression and the one-transaction guarantee."""

from __future__ import annotations

import json

import duckdb
import pytest

from connectors.base import Column, StreamSpec
from connectors.loader import Warehouse, connect
from connectors.suppression import hash_identifier, normalize, sql_hash
from tests.connectors.helpers import rows, scalar

SPEC = StreamSpec(
    name="things",
    columns=(
        Column("id", "bigint"),
        Column("email"),
        Column("phone"),
        Column("score", "double"),
        Column("active", "boolean"),
        Column("seen_at", "timestamp"),
        Column("created", "epoch"),
        Column("city", path="$.address.city"),
        Column("tags", "json"),
    ),
    identifiers={"email": "email", "phone": "phone"},
)


def rec(**fields) -> str:
    return json.dumps(fields)


def test_types_paths_and_drift(cdp_env):
    with Warehouse(cdp_env) as wh:
        figures = wh.load_batch(
            "t",
            SPEC,
            [
                rec(
                    id=1,
                    email="A@x.com",
                    score="2.5",
                    active="true",
                    seen_at="2026-01-01T10:00:00.5-05:00",
                    created=1_700_000_000,
                    address={"city": "Oslo"},
                    tags=["a", "b"],
                    new_field={"deep": 1},
                ),
                rec(id="2"),  # every other field missing: nulls
            ],
            {"cursor": 2},
            "b1",
        )
    assert (figures.loaded, figures.quarantined) == (2, 0)
    got = rows(
        cdp_env,
        "select id, email, score, active, cast(seen_at as varchar), cast(created as varchar), "
        "city, tags, _record->'$.new_field'->>'deep', _batch_id from raw_t.things order by id",
    )
    assert got[0] == (
        1,
        "A@x.com",
        2.5,
        True,
        "2026-01-01 15:00:00.5",
        "2023-11-14 22:13:20",
        "Oslo",
        '["a","b"]',
        "1",
        "b1",
    )
    assert got[1] == (2, None, None, None, None, None, None, None, None, "b1")


def test_quarantine_keeps_good_neighbours(cdp_env):
    bad = ["{oops", "[1, 2]", rec(email="no-id@x.com"), rec(id=3, score="high"), rec(id="x")]
    good = [rec(id=1), rec(id=2)]
    with Warehouse(cdp_env) as wh:
        figures = wh.load_batch("t", SPEC, [good[0], *bad, good[1]], None, "b1")
    assert (figures.loaded, figures.quarantined) == (2, 5)
    reasons = dict(rows(cdp_env, "select raw_record, reason from ops.quarantine"))
    assert reasons == {
        "{oops": "invalid JSON",
        "[1, 2]": "not a JSON object",
        bad[2]: "missing primary key id",
        bad[3]: "score: cannot read high as double",
        bad[4]: "missing primary key id; id: cannot read x as bigint",
    }
    assert scalar(cdp_env, "select count(distinct batch_id) from ops.quarantine") == 1


def test_upsert_latest_wins_within_and_across_batches(cdp_env):
    with Warehouse(cdp_env) as wh:
        wh.load_batch("t", SPEC, [rec(id=1, email="v1"), rec(id=1, email="v2")], None, "b1")
        wh.load_batch("t", SPEC, [rec(id=1, email="v3"), rec(id=2, email="w")], None, "b2")
    assert rows(cdp_env, "select id, email, _batch_id from raw_t.things order by id") == [
        (1, "v3", "b2"),
        (2, "w", "b2"),
    ]


def test_ignore_mode_keeps_the_first_delivery(cdp_env):
    spec = StreamSpec("ev", (Column("message_id"), Column("v")), "message_id", "ignore")
    with Warehouse(cdp_env) as wh:
        wh.load_batch(
            "t", spec, [rec(message_id="m", v="1"), rec(message_id="m", v="2")], None, "a"
        )
        assert wh.load_batch("t", spec, [rec(message_id="m", v="3")], None, "b").loaded == 0
    assert rows(cdp_env, "select message_id, v from raw_t.ev") == [("m", "1")]


def test_data_and_cursor_commit_together_or_not_at_all(cdp_env, monkeypatch):
    with Warehouse(cdp_env) as wh:
        wh.load_batch("t", SPEC, [rec(id=1)], {"after": "1"}, "b1")

        def broken_state(*args):
            raise RuntimeError("disk full")

        monkeypatch.setattr(wh, "_put_state", broken_state)
        with pytest.raises(RuntimeError):
            wh.load_batch("t", SPEC, [rec(id=2), "{bad"], {"after": "2"}, "b2")
        monkeypatch.undo()
        assert wh.get_state("t", "things") == {"after": "1"}
    assert scalar(cdp_env, "select count(*) from raw_t.things") == 1
    assert scalar(cdp_env, "select count(*) from ops.quarantine") == 0


def test_new_typed_columns_are_added_to_an_existing_table(cdp_env):
    old = StreamSpec("things", (Column("id", "bigint"),))
    with Warehouse(cdp_env) as wh:
        wh.load_batch("t", old, [rec(id=1, email="a@x")], None, "b1")
    with Warehouse(cdp_env) as wh:
        wh.load_batch("t", SPEC, [rec(id=2, email="b@x")], None, "b2")
    assert rows(cdp_env, "select id, email from raw_t.things order by id") == [
        (1, None),
        (2, "b@x"),
    ]


def test_suppressed_identifiers_are_dropped_and_counted(cdp_env):
    con = connect(cdp_env)
    con.execute("create schema if not exists ops")
    con.execute("create table ops.suppression_list (id_type varchar, id_value_hash varchar)")
    con.execute(
        "insert into ops.suppression_list values ('email', ?), ('phone', ?)",
        [hash_identifier("email", "gone@x.com"), hash_identifier("phone", "(201) 555-0100")],
    )
    con.close()
    batch = [
        rec(id=1, email="  GONE@x.com "),
        rec(id=2, phone="+1 201 555 0100"),
        rec(id=3, email="stay@x.com", phone="201-555-0199"),
    ]
    with Warehouse(cdp_env) as wh:
        figures = wh.load_batch("t", SPEC, batch, None, "b1")
    assert (figures.loaded, figures.suppressed, figures.quarantined) == (1, 2, 0)
    assert rows(cdp_env, "select id from raw_t.things") == [(3,)]


@pytest.mark.parametrize(
    ("id_type", "value", "normalized"),
    [
        ("email", "  Ada.Lovelace@Example.COM\t", "ada.lovelace@example.com"),
        ("email", "   ", None),
        ("phone", "(201) 000-0012", "12010000012"),
        ("phone", "+1 201.000.0012", "12010000012"),
        ("phone", "+44 20 7946 0958", "442079460958"),
        ("user_id", 1012, "1012"),
        ("anonymous_id", "anon-00ff", "anon-00ff"),
        ("email", None, None),
    ],
)
def test_python_and_sql_hashes_agree(id_type, value, normalized):
    assert normalize(id_type, value) == normalized
    con = duckdb.connect()
    got = con.execute(
        f"select {sql_hash(id_type, 'v')} from (select cast(? as varchar) as v)", [value]
    ).fetchone()[0]
    assert got == hash_identifier(id_type, value)


def test_connect_resolves_cdp_schema_in_a_file_named_cdp(tmp_path):
    path = tmp_path / "cdp.duckdb"
    with Warehouse(path) as wh:
        wh.load_batch("t", SPEC, ["{x"], None, "b1")
    con = connect(path, read_only=True)
    assert con.execute("select count(*) from ops.quarantine").fetchone()[0] == 1
    con.close()


def test_unchanged_records_are_not_reloaded(cdp_env):
    with Warehouse(cdp_env) as wh:
        assert wh.load_batch("t", SPEC, [rec(id=1, email="a"), rec(id=2)], None, "b1").loaded == 2
        assert wh.load_batch("t", SPEC, [rec(id=1, email="a"), rec(id=2)], None, "b2").loaded == 0
        assert wh.load_batch("t", SPEC, [rec(id=1, email="b"), rec(id=2)], None, "b3").loaded == 1
    assert rows(cdp_env, "select id, email, _batch_id from raw_t.things order by id") == [
        (1, "b", "b3"),
        (2, None, "b1"),
    ]


def test_warehouse_shares_the_file_with_other_connections_of_the_process(tmp_path):
    path = tmp_path / "cdp.duckdb"
    other = duckdb.connect(str(path))  # e.g. a resource of the orchestrator, held open
    try:
        with Warehouse(path) as wh:
            wh.load_batch("t", SPEC, [rec(id=1), "{x"], {"c": 1}, "b1")
        assert other.execute("select count(*) from cdp.ops.quarantine").fetchone()[0] == 1
        assert other.execute("select count(*) from raw_t.things").fetchone()[0] == 1
    finally:
        other.close()
