"""Ground truth about a demo person, and a scanner that does not share code with the one tested.

The generator knows which records are whose (``_person_id``); from that the tests derive every
identifier a person's records carried, in each case and format the sources held, and look for
them in every cell of every table and view of the warehouse with plain Python.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import duckdb
import polars as pl

from orchestration.demo.generator import JUNK_EMAIL, JUNK_PHONE, JUNK_TEXT, DemoData

TOKEN = re.compile(r"[A-Za-z0-9_.@+-]+")
PHONE_RUN = re.compile(r"\+?\(?\d[\d \t().-]{6,}\d")
# columns and JSON keys whose values are ids; elsewhere a bare number is an amount or a count
ID_KEY = re.compile(r"(^|_)id$|Id$|^id_value$|^record_key$|^customer$|^requester_id$|^row_key$")


@dataclass
class Traces:
    """Everything that identifies one person, as the sources held it."""

    person: int
    emails: set[str] = field(default_factory=set)  # lower-case, trimmed
    phone_digits: str = ""  # 10 digits
    ids: set[str] = field(default_factory=set)  # user, anonymous, vendor record ids
    rows: dict[str, set[str]] = field(default_factory=dict)  # raw table -> primary keys

    def numeric_ids(self) -> set[str]:
        return {i for i in self.ids if i.isdigit()}


def person_traces(demo: DemoData, person: int) -> Traces:
    t = Traces(person)
    p = demo.people.filter(pl.col("_person_id") == person).row(0, named=True)
    t.phone_digits = p["phone_digits"]
    for name, frame in demo.tables.items():
        own = frame.filter(pl.col("_person_id") == person)
        if own.is_empty():
            continue
        key = "message_id" if name == "events.events" else "id"
        t.rows[f"raw_{name}"] = {str(v) for v in own[key].to_list()}
        for column in ("email", "email_address"):
            if column in own.columns:
                t.emails |= {e.strip().lower() for e in own[column].drop_nulls().to_list()}
        for column in ("anonymous_id", "user_id"):
            if column in own.columns:
                t.ids |= {str(v) for v in own[column].drop_nulls().to_list()}
        if name in (
            "app.users",
            "hubspot.contacts",
            "stripe.customers",
            "zendesk.users",
            "mailchimp.members",
            "klaviyo.profiles",
        ):
            t.ids |= {str(v) for v in own["id"].to_list()}
    t.emails.discard(JUNK_EMAIL)
    t.emails.discard(JUNK_TEXT)
    return t


def clean_people(demo: DemoData) -> list[int]:
    """People in every source whose identifiers are theirs alone: no shared device, no junk."""
    events = demo.tables["events.events"]
    shared = (
        events.group_by("anonymous_id")
        .agg(pl.col("_person_id").n_unique().alias("n"))
        .filter(pl.col("n") > 1)["anonymous_id"]
    )
    tainted = set(events.filter(pl.col("anonymous_id").is_in(shared))["_person_id"].to_list())
    for frame in demo.tables.values():
        for column in ("email", "phone"):
            if column in frame.columns:
                junk = frame.filter(pl.col(column).is_in([JUNK_EMAIL, JUNK_PHONE, JUNK_TEXT]))
                tainted |= set(junk["_person_id"].to_list())
    everywhere = demo.people.filter(
        pl.col("has_app") & pl.col("has_crm") & pl.col("has_billing") & pl.col("has_support")
    )["_person_id"].to_list()
    return [p for p in everywhere if p not in tainted]


def _leaves(key: str, value: object):
    """(key, text) of a cell, and of every JSON leaf when the cell is JSON text."""
    if value is None:
        return
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    yield key, text
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except ValueError:
            return
        stack = [(key, doc)]
        while stack:
            k, v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.items())
            elif isinstance(v, list):
                stack.extend((k, x) for x in v)
            elif v is not None:
                yield from _leaves(str(k), v)


def cell_hits(t: Traces, key: str, text: str) -> set[str]:
    """Which of the person's traces a cell holds (described, not the raw value)."""
    found = set()
    lowered = text.lower()
    for email in t.emails:
        if email in lowered:
            found.add("email")
    for run in PHONE_RUN.findall(text):
        digits = re.sub(r"\D", "", run)
        if digits in (t.phone_digits, "1" + t.phone_digits):
            found.add("phone")
    tokens = set(TOKEN.findall(text))
    for ident in t.ids & tokens:
        if not ident.isdigit() or ID_KEY.search(key):
            found.add(f"id {ident}")
        elif re.search(rf"(?<![\w.@+-])[a-z_]*id:{ident}(?![\w.@+-])", text):
            found.add(f"id {ident}")  # written as type:value, as identity tables do
    return found


def find_traces(con: duckdb.DuckDBPyConnection, t: Traces) -> dict[str, set[str]]:
    """``schema.table.column -> traces`` over every table and view of every schema."""
    relations = con.execute(
        "select schema_name, table_name from duckdb_tables() where not temporary "
        "union all select schema_name, view_name from duckdb_views() "
        "where not internal and not temporary"
    ).fetchall()
    hits: dict[str, set[str]] = {}
    for schema, name in relations:
        rel = f'"{schema}"."{name}"'
        columns = [d[0] for d in con.execute(f"select * from {rel} limit 0").description]
        for column in columns:
            values = con.execute(f'select distinct "{column}" from {rel}').fetchall()
            for (value,) in values:
                for key, text in _leaves(column, value):
                    found = cell_hits(t, key, text)
                    if found:
                        hits.setdefault(f"{schema}.{name}.{column}", set()).update(found)
    return hits
