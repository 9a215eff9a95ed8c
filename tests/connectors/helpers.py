"""Shared checks for connector tests: a raw table must hold exactly the source's records."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from connectors.loader import connect
from orchestration.demo.generator import DemoData

KEYS = {"events.events": "message_id"}


def _canonical_json(value: str | None) -> str | None:
    return None if value is None else json.dumps(json.loads(value), sort_keys=True)


def normalize(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """Naive-UTC timestamps, canonical JSON text, sorted by key: comparable across systems."""
    frame = frame.with_columns(
        pl.col(pl.Datetime("us", "UTC")).dt.replace_time_zone(None),
    ).with_columns(pl.col(pl.Datetime).dt.cast_time_unit("us"))
    if "properties" in frame.columns:
        frame = frame.with_columns(
            pl.col("properties").map_elements(_canonical_json, return_dtype=pl.Utf8)
        )
    return frame.sort(key)


def raw_frame(db_path: Path, table: str, columns: list[str]) -> pl.DataFrame:
    source, stream = table.split(".")
    con = connect(db_path, read_only=True)
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        return con.sql(f"select {cols} from raw_{source}.{stream}").pl()
    finally:
        con.close()


def assert_raw_equals_source(db_path: Path, data: DemoData, table: str) -> None:
    """Every source record exactly once, with every typed column equal to the source's value."""
    expected = data.source(table)
    key = KEYS.get(table, "id")
    actual = raw_frame(db_path, table, expected.columns)
    assert actual[key].n_unique() == actual.height, f"{table}: duplicate keys"
    assert_frame_equal(
        normalize(actual, key), normalize(expected, key), check_dtypes=False, check_exact=False
    )


def scalar(db_path: Path, sql: str, params: list | None = None) -> object:
    con = connect(db_path, read_only=True)
    try:
        return con.execute(sql, params or []).fetchone()[0]
    finally:
        con.close()


def rows(db_path: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = connect(db_path, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
