"""The demo's non-HTTP sources on disk: Segment event files and the product's SQLite database.

``write_events`` writes the generator's events as Segment-spec messages (what analytics.js or
the collector would log), spread over several JSON-lines files, with a few messages delivered
twice across files, as client retries do, so the connector's deduplication is exercised.
``write_app_sqlite`` writes the product database the app connector reads in the demo.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import orjson
import polars as pl

from orchestration.demo.generator import DemoData

ISO_MS = "%Y-%m-%dT%H:%M:%S%.3fZ"
ISO_US = "%Y-%m-%dT%H:%M:%S%.6f+00:00"  # one format, so SQLite's text comparisons order by time


def segment_message(row: dict) -> dict:
    """One generator event as a Segment-spec message (fields absent rather than null)."""
    msg: dict = {
        "type": row["type"],
        "messageId": row["message_id"],
        "anonymousId": row["anonymous_id"],
        "timestamp": row["timestamp"],
        "context": {"library": {"name": "analytics.js", "version": "4.1.0"}},
    }
    if row["user_id"] is not None:
        msg["userId"] = row["user_id"]
    if row["type"] == "identify" and row["email"] is not None:
        msg["traits"] = {"email": row["email"]}
    if row["type"] == "track":
        msg["event"] = row["event"]
    if row["type"] in ("page", "screen"):
        msg["name"] = row["name"]
        msg["context"]["page"] = {"path": row["page_path"]}
    msg["properties"] = json.loads(row["properties"] or "{}")
    return {k: v for k, v in msg.items() if v is not None}


def write_events(
    data: DemoData, events_dir: str | Path, n_files: int = 4, n_duplicates: int = 5
) -> list[Path]:
    """Write the events as ``n_files`` JSONL files; ``n_duplicates`` messages appear twice."""
    folder = Path(events_dir)
    folder.mkdir(parents=True, exist_ok=True)
    frame = data.source("events.events").with_columns(
        pl.col("timestamp").dt.convert_time_zone("UTC").dt.strftime(ISO_MS)
    )
    lines = [orjson.dumps(segment_message(row)) + b"\n" for row in frame.iter_rows(named=True)]
    size = -(-len(lines) // n_files) if lines else 0
    chunks = [lines[i * size : (i + 1) * size] for i in range(n_files)] if size else [[]]
    # a client retry: the last messages of a file arrive again at the start of the next one
    for i in range(1, len(chunks)):
        chunks[i] = chunks[i - 1][-n_duplicates:] + chunks[i]
    paths = []
    for i, chunk in enumerate(chunks, start=1):
        path = folder / f"events-{data.seed}-{i:04d}.jsonl"
        path.write_bytes(b"".join(chunk))
        paths.append(path)
    return paths


APP_DDL = {
    "users": """create table users (
        id integer primary key, email text, phone text, first_name text, last_name text,
        plan text, marketing_opt_in integer, created_at text, updated_at text)""",
    "orders": """create table orders (
        id integer primary key, user_id integer, amount real, currency text, status text,
        created_at text, updated_at text)""",
}


def app_frame(data: DemoData, table: str) -> pl.DataFrame:
    """A product table as SQLite holds it: ISO-8601 UTC text timestamps, 0/1 booleans."""
    frame = data.source(f"app.{table}")
    return frame.with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.strftime(ISO_US),
        pl.col(pl.Boolean).cast(pl.Int64),
    )


def vendor_rows(data: DemoData, table: str, time_format: str | None) -> list[dict]:
    """A generator table as a vendor API holds it: timestamps as text in the vendor's format
    (``time_format`` for ``strftime``), or as unix seconds when ``time_format`` is None."""
    frame = data.source(table)
    stamps = pl.col(pl.Datetime).dt.convert_time_zone("UTC")
    stamps = stamps.dt.strftime(time_format) if time_format else stamps.dt.epoch("s")
    return frame.with_columns(stamps).to_dicts()


def write_app_sqlite(data: DemoData, path: str | Path) -> str:
    """Write ``users`` and ``orders`` to a fresh SQLite file; returns its ``sqlite:///`` URL."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        for table, ddl in APP_DDL.items():
            con.execute(ddl)
            frame = app_frame(data, table)
            marks = ", ".join("?" * frame.width)
            con.executemany(
                f"insert into {table} ({', '.join(frame.columns)}) values ({marks})",
                frame.iter_rows(),
            )
            con.execute(f"create index {table}_updated on {table} (updated_at, id)")
        con.commit()
    finally:
        con.close()
    return f"sqlite:///{path}"
