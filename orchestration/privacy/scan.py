"""Find, count and delete the rows of any warehouse table that hold given identifiers.

A row belongs to the person when any of its cells holds one of their identifiers: a typed column
or a leaf of a JSON text column (``_record``, ``properties``, sync payloads, quarantined
records). Emails and phones identify themselves, so they are matched in every text cell in any
case, padding or phone format (also inside free text). Opaque ids are matched only under a key
that holds that id type (``user_id``, ``userId``, ``requester_id``, a raw table's own ``id``
...): ``1001`` the user id must not take ticket ``1001`` with it. Non-numeric ids of some
length (``anon-...``, ``cus_...``) are distinctive enough to match under any key.

The key map comes from three places: each connector stream's ``identifiers`` (column and JSON
path per id type), the primary keys of the known raw tables, and aliases that vendors and the
Segment spec use in records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from orchestration.privacy.normalize import PHONE_SQL_MACRO, Identifier
from orchestration.privacy.tables import PRIVACY_TABLES

log = logging.getLogger(__name__)

ANY_TYPE = "*"

# JSON keys and column names that hold an id type wherever they appear (compared without case
# and underscores, so ``anonymous_id`` and ``anonymousId`` are one key)
GLOBAL_KEYS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id",),
    "external_id": ("user_id",),  # Zendesk and many tools carry the product's user id here
    "anonymous_id": ("anonymous_id",),
    "previous_id": ("anonymous_id", "user_id"),  # Segment alias: either kind of earlier id
    "requester_id": ("zendesk_user_id",),
    "submitter_id": ("zendesk_user_id",),
    "customer": ("stripe_customer_id",),
    "customer_id": ("customer_id",),
}
# (value column, column naming its type): ``id_value`` is typed by the row's ``id_type``,
# ``record_key`` by the staging model in the row's ``record_model`` (identity, consent ledger)

# a raw table's own ``id`` is an identifier only where the record *is* the person
TABLE_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw_app.users": {"id": ("user_id",)},
    "raw_hubspot.contacts": {"id": ("hubspot_contact_id",), "vid": ("hubspot_contact_id",)},
    "raw_stripe.customers": {"id": ("stripe_customer_id",)},
    "raw_zendesk.users": {"id": ("zendesk_user_id",)},
    "raw_events.events": {"message_id": ("message_id",)},
}

# keys of a person's records that are not identifiers of the person
RECORD_KEY_TYPES = frozenset({"message_id"})

DISTINCTIVE_MIN_LENGTH = 8
_NUMERIC = re.compile(r"^[+-]?\d+$")
# runs that may be a phone number in free text; dates are excluded after extraction
PHONE_CANDIDATE_RE = r"\+?\(?\d[\d \t().-]{6,}\d"

_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
_INTEGER_TYPES |= {"UINTEGER", "UBIGINT", "UHUGEINT"}
_NESTED_PREFIXES = ("STRUCT", "MAP", "UNION", "JSON")


def norm_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connector_keys() -> dict[str, dict[str, tuple[str, ...]]]:
    """Column and JSON-leaf names per raw table, from each connector stream's identifiers."""
    try:
        from connectors.registry import SOURCES
    except Exception as exc:  # connectors absent or broken: the static map still applies
        log.warning("connector registry unavailable (%s); using the built-in key map", exc)
        return {}
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    for source, cls in SOURCES.items():
        try:
            specs = cls.stream_specs()
        except Exception as exc:
            log.warning("cannot read the streams of %s: %s", source, exc)
            continue
        for name, spec in specs.items() if isinstance(specs, dict) else []:
            keys: dict[str, tuple[str, ...]] = {}
            columns = {c.name: c for c in getattr(spec, "columns", ())}
            for column, id_type in (getattr(spec, "identifiers", None) or {}).items():
                keys[column] = (id_type,)
                col = columns.get(column)
                path = getattr(col, "path", None) if col is not None else None
                if path:
                    leaf = path.rsplit(".", 1)[-1].strip('"')
                    keys[leaf] = (id_type,)
            found[f"raw_{source}.{name}"] = keys
    return found


def key_map(table: str, extra: dict[str, dict[str, tuple[str, ...]]]) -> list[tuple[str, str]]:
    """``(normalized key, id type)`` pairs that hold an identifier in ``table``."""
    pairs: set[tuple[str, str]] = set()
    for source in (GLOBAL_KEYS, TABLE_KEYS.get(table, {}), extra.get(table, {})):
        for key, types in source.items():
            pairs.update((norm_key(key), t) for t in types)
    return sorted(pairs)


@dataclass
class Target:
    """The identifiers to look for, split by how they are matched."""

    identifiers: list[Identifier]

    @property
    def emails(self) -> list[str]:
        return sorted({i.value for i in self.identifiers if i.id_type == "email"})

    @property
    def phones(self) -> list[str]:
        return sorted({i.value for i in self.identifiers if i.id_type == "phone"})

    @property
    def typed_ids(self) -> list[tuple[str, str]]:
        return sorted(
            {(i.id_type, i.value) for i in self.identifiers if i.id_type not in ("email", "phone")}
        )

    @property
    def distinctive(self) -> list[str]:
        return sorted(
            {
                v
                for t, v in self.typed_ids
                if len(v) >= DISTINCTIVE_MIN_LENGTH and not _NUMERIC.match(v)
            }
        )

    def token_regex(self) -> str | None:
        """Distinctive ids as whole tokens of any text, and any id written ``type:value``.

        Identity tables and merge logs write identifiers as ``type:value`` or inside record
        references (``stg_stripe__customers:cus_1a``); numbers only count in the typed form.
        """
        terms = [re.escape(v) for v in self.distinctive]
        terms += [re.escape(f"{t}:{v}") for t, v in self.typed_ids if t != ANY_TYPE]
        if not terms:
            return None
        edge = r"A-Za-z0-9_.@+\-"
        return rf"(?:^|[^{edge}])(?:{'|'.join(terms)})(?:$|[^{edge}])"

    def email_regex(self) -> str | None:
        if not self.emails:
            return None
        alternation = "|".join(re.escape(e) for e in self.emails)
        return rf"(?:^|[^a-z0-9._%+-])(?:{alternation})(?:$|[^a-z0-9.-]|\.(?:$|[^a-z0-9]))"


class Scanner:
    """Runs the match on one connection; temp tables hold the target for the session."""

    def __init__(self, con: duckdb.DuckDBPyConnection, identifiers: Iterable[Identifier]):
        self.con = con
        self.target = Target(sorted(set(identifiers)))
        self.extra_keys = connector_keys()
        con.execute(PHONE_SQL_MACRO)
        con.execute("create or replace temp table _forget_ids (id_type varchar, value varchar)")
        if self.target.typed_ids:
            con.executemany("insert into _forget_ids values (?, ?)", self.target.typed_ids)
        con.execute("create or replace temp table _forget_keys (key varchar, id_type varchar)")
        self._view_names: set[str] | None = None
        self._column_cache: dict[str, list[tuple[str, str]]] | None = None
        self._origin_keys_ready = False
        self._model_types_ready = False

    def tables(self, include_views: bool = False) -> list[str]:
        """Every user table of the warehouse (``schema.table``), the privacy tables excepted."""
        rows = self.con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where not temporary and database_name = current_database() "
            "order by schema_name, table_name"
        ).fetchall()
        if include_views:
            rows += self.con.execute(
                "select schema_name, view_name from duckdb_views() "
                "where not internal and not temporary and database_name = current_database() "
                "order by schema_name, view_name"
            ).fetchall()
        names = [f"{s}.{t}" for s, t in rows]
        return [n for n in names if n not in PRIVACY_TABLES]

    def forget_columns(self) -> None:
        """Read columns afresh: the caller created or replaced tables since the last scan."""
        self._column_cache = None

    def _columns(self, table: str) -> list[tuple[str, str]]:
        if table.startswith("temp."):
            return self.con.execute(
                "select column_name, data_type from duckdb_columns() where database_name = "
                "'temp' and table_name = ? order by column_index",
                [table.split(".", 1)[1]],
            ).fetchall()
        if self._column_cache is None:
            cache: dict[str, list[tuple[str, str]]] = {}
            rows = self.con.execute(
                "select schema_name || '.' || table_name, column_name, data_type "
                "from duckdb_columns() where database_name = current_database() "
                "order by schema_name, table_name, column_index"
            ).fetchall()
            for name, column, dtype in rows:
                cache.setdefault(name, []).append((column, dtype))
            self._column_cache = cache
        return self._column_cache.get(table, [])

    @staticmethod
    def _ref(table: str) -> str:
        schema, name = table.split(".", 1)
        return f"{q(schema)}.{q(name)}"

    def _cells_sql(self, table: str) -> str | None:
        """CTEs ending in ``cells(rid, k, v)``: every text-bearing cell of the rows that could
        hold a target (one cheap test per row on all its text first, then per cell)."""
        ref = self._ref(table)
        exprs = []
        for column, dtype in self._columns(table):
            upper = dtype.upper()
            if upper == "VARCHAR":
                template = "{}"
            elif upper in _INTEGER_TYPES:
                template = "cast({} as varchar)"
            elif upper.startswith(_NESTED_PREFIXES) or upper.endswith("]"):
                template = "cast(to_json({}) as varchar)"
            else:
                continue
            exprs.append((column, template))
        if not exprs:
            return None
        whole = (
            "concat_ws(chr(31), "
            + ", ".join(template.format(f"t.{q(c)}") for c, template in exprs)
            + ")"
        )
        parts = [
            f"select r._forget_rid as rid, {_lit(c)} as k, {template.format(f'r.{q(c)}')} as v "
            f"from rows as r where r.{q(c)} is not null"
            for c, template in exprs
        ]
        return (
            f"rows as materialized (select t.rowid as _forget_rid, t.* from {ref} as t "
            f"where {self._prefilter(whole)}),\n"
            "cells as (" + "\nunion all\n".join(parts) + ")"
        )

    def _prefilter(self, text: str) -> str:
        """A cheap test that is true for every text holding a target (and some others).

        Emails and ids appear verbatim (emails in any case); a phone in any format keeps the
        digits of its national number in order with at most a few separators between them (ten
        digits in North America; elsewhere the last eight, as trunk prefixes vary).
        """
        terms = []
        needles = sorted({*self.target.emails, *(v.lower() for _, v in self.target.typed_ids)})
        if needles:
            # a number counts only whole: 1004 is in many timestamps and amounts, not as 1004
            alternation = "|".join(
                rf"(?:^|\D){re.escape(n)}(?:\D|$)" if n.isdigit() else re.escape(n) for n in needles
            )
            terms.append(f"regexp_matches(lower({text}), {_lit(alternation)})")
        if self.target.phones:
            tails = sorted({p[-10:] if p.startswith("+1") else p[-8:] for p in self.target.phones})
            spaced = "|".join(r"\D{0,3}".join(tail) for tail in tails)
            terms.append(f"regexp_matches({text}, {_lit(spaced)})")
        return " or ".join(terms) or "false"

    def matching_rowids_sql(self, table: str, keys_of: str | None = None) -> str | None:
        """SQL selecting the rowids of ``table`` that hold any target identifier."""
        cells = self._cells_sql(table)
        if cells is None:
            return None
        self.con.execute("delete from _forget_keys")
        pairs = key_map(keys_of or table, self.extra_keys)
        if pairs:
            values = ", ".join(f"({_lit(k)}, {_lit(t)})" for k, t in pairs)
            self.con.execute(f"insert into _forget_keys values {values}")
        conditions = []
        email_re = self.target.email_regex()
        if email_re:
            conditions.append(
                f"(contains(c.v, '@') and regexp_matches(lower(c.v), {_lit(email_re)}))"
            )
        if self.target.phones:
            phones = "[" + ", ".join(_lit(p) for p in self.target.phones) + "]"
            conditions.append(
                "list_has_any(list_transform(list_filter("
                f"regexp_extract_all(c.v, {_lit(PHONE_CANDIDATE_RE)}), "
                r"lambda x: not regexp_matches(x, '^\d{4}-\d\d-\d\d')), "
                f"lambda x: cdp_phone_e164(x)), {phones})"
            )
        token_re = self.target.token_regex()
        if token_re:
            conditions.append(f"regexp_matches(c.v, {_lit(token_re)})")
        selects = []
        if conditions:
            selects.append(f"select c.rid from candidates as c where {' or '.join(conditions)}")
        if self.target.typed_ids:
            selects.append(
                "select c.rid from candidates as c "
                "join _forget_keys as fk "
                "on fk.key = replace(replace(lower(c.k), '_', ''), '-', '') "
                "join _forget_ids as fi on fi.value = trim(c.v) "
                f"and (fi.id_type = fk.id_type or fk.id_type = '{ANY_TYPE}' "
                f"or fi.id_type = '{ANY_TYPE}')"
            )
        columns = {c for c, _ in self._columns(table)}
        ref = self._ref(table)
        if self.target.typed_ids and {"id_type", "id_value"} <= columns:
            selects.append(
                f"select o.rowid as rid from {ref} as o join _forget_ids as fi "
                f"on fi.id_type in (o.id_type, '{ANY_TYPE}') "
                "and fi.value = trim(cast(o.id_value as varchar))"
            )
        if self.target.typed_ids and {"record_model", "record_key"} <= columns:
            self._fill_model_types()
            selects.append(
                f"select o.rowid as rid from {ref} as o "
                "join _forget_model_types as mt on mt.model = o.record_model "
                f"join _forget_ids as fi on fi.id_type in (mt.id_type, '{ANY_TYPE}') "
                "and fi.value = trim(cast(o.record_key as varchar))"
            )
        if self.target.typed_ids and {"source", "stream"} <= columns:
            # a record kept apart from its raw table (quarantine): its own ``id`` is typed by
            # the table it was bound for
            self._fill_origin_keys()
            selects.append(
                "select c.rid from candidates as c "
                f"join {self._ref(table)} as o on o.rowid = c.rid "
                "join _forget_origin_keys as ok on ok.tbl = 'raw_' || o.source || '.' || o.stream "
                "and ok.key = replace(replace(lower(c.k), '_', ''), '-', '') "
                "join _forget_ids as fi on fi.value = trim(c.v) and fi.id_type = ok.id_type"
            )
        if not selects:
            return None
        # only cells that could hold a target are kept, and only their JSON is taken apart
        is_json = "left(ltrim(c.v), 1) in ('{', '[') and json_valid(c.v)"
        return (
            f"with {cells},\n"
            f"texts as materialized (select * from cells as c where {self._prefilter('c.v')}),\n"
            "leaves as (select c.rid, j.key as k, j.atom ->> '$' as v from texts as c, "
            f"json_tree(case when {is_json} then c.v else '[]' end) as j "
            "where j.atom is not null and j.key is not null),\n"
            "candidates as materialized (select * from texts union all select * from leaves)\n"
            + "\nunion\n".join(selects)
        )

    def identifiers_of_matches(self, table: str) -> set[Identifier]:
        """The declared identifier columns of the rows that match, as identifiers.

        Declared means: the connector stream's ``identifiers`` and the raw table's own key, so
        only values that are identifiers by contract are collected.
        """
        declared = {**TABLE_KEYS.get(table, {}), **self.extra_keys.get(table, {})}
        declared = {
            c: tuple(t for t in types if t not in RECORD_KEY_TYPES) for c, types in declared.items()
        }
        columns = {c for c, _ in self._columns(table)}
        wanted = [(c, types) for c, types in declared.items() if c in columns]
        sql = self.matching_rowids_sql(table) if wanted else None
        if sql is None:
            return set()
        select = ", ".join(f"cast({q(c)} as varchar)" for c, _ in wanted)
        rows = self.con.execute(
            f"select distinct {select} from {self._ref(table)} where rowid in ({sql})"
        ).fetchall()
        found = set()
        for row in rows:
            for (_, types), value in zip(wanted, row, strict=True):
                for id_type in types:
                    if value is not None and (i := Identifier.of(id_type, value)) is not None:
                        found.add(i)
        return found

    def _fill_model_types(self) -> None:
        if self._model_types_ready:
            return
        from orchestration.privacy.resolve import record_key_types

        self.con.execute(
            "create or replace temp table _forget_model_types (model varchar, id_type varchar)"
        )
        pairs = sorted(record_key_types().items())
        if pairs:
            values = ", ".join(f"({_lit(m)}, {_lit(t)})" for m, t in pairs)
            self.con.execute(f"insert into _forget_model_types values {values}")
        self._model_types_ready = True

    def _fill_origin_keys(self) -> None:
        if self._origin_keys_ready:
            return
        self.con.execute(
            "create or replace temp table _forget_origin_keys "
            "(tbl varchar, key varchar, id_type varchar)"
        )
        rows = [
            (table, norm_key(key), id_type)
            for source in (TABLE_KEYS, self.extra_keys)
            for table, keys in source.items()
            for key, types in keys.items()
            for id_type in types
        ]
        if rows:
            values = ", ".join(f"({_lit(t)}, {_lit(k)}, {_lit(i)})" for t, k, i in set(rows))
            self.con.execute(f"insert into _forget_origin_keys values {values}")
        self._origin_keys_ready = True

    def count(self, table: str) -> int:
        if table in self._views():
            # views have no rowid: scan a copy (views are small or derived; this is a check)
            ref = self._ref(table)
            self.con.execute(f"create or replace temp table _forget_view as from {ref}")
            try:
                return self._count("temp._forget_view", keys_of=table)
            finally:
                self.con.execute("drop table if exists temp._forget_view")
        return self._count(table)

    def _count(self, table: str, keys_of: str | None = None) -> int:
        sql = self.matching_rowids_sql(table, keys_of=keys_of)
        if sql is None:
            return 0
        return self.con.execute(f"select count(distinct rid) from ({sql})").fetchone()[0]

    def _views(self) -> set[str]:
        if self._view_names is None:
            rows = self.con.execute(
                "select schema_name, view_name from duckdb_views() "
                "where not internal and not temporary and database_name = current_database()"
            ).fetchall()
            self._view_names = {f"{s}.{v}" for s, v in rows}
        return self._view_names

    def delete(self, table: str) -> int:
        sql = self.matching_rowids_sql(table)
        if sql is None:
            return 0
        result = self.con.execute(f"delete from {self._ref(table)} where rowid in ({sql})")
        return result.fetchone()[0]

    def scan(self, tables: Iterable[str] | None = None) -> dict[str, int]:
        """Matching row counts per table (tables without a match are left out)."""
        found = {}
        for table in tables if tables is not None else self.tables(include_views=True):
            n = self.count(table)
            if n:
                found[table] = n
        return found


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
