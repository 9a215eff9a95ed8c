"""From one identifier to everything that names the same person, through the identity graph.

``marts.customer_identifiers`` gives the customer(s) holding the identifier and then every
identifier of those customers; ``identity.int_identity__record_customers`` adds the keys of
records attributed to them (event message ids, which are not identifiers but are their rows).
Without a built identity graph only the identifier itself can be forgotten, and the receipt
says so.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from orchestration import settings
from orchestration.privacy.normalize import PHONE_SQL_MACRO, Identifier

log = logging.getLogger(__name__)

IDENTIFIERS_TABLE = ("marts", "customer_identifiers")
RECORDS_TABLE = ("identity", "int_identity__record_customers")


@dataclass
class Resolution:
    requested: list[Identifier]
    customer_ids: list[str] = field(default_factory=list)
    identifiers: list[Identifier] = field(default_factory=list)
    # keys of records attributed to the person that are not identifiers (event message ids):
    # their rows go, but they are not suppressed
    record_keys: list[Identifier] = field(default_factory=list)
    graph_available: bool = False

    @property
    def found(self) -> bool:
        return bool(self.customer_ids)

    def of_type(self, *types: str) -> list[str]:
        return sorted({i.value for i in self.identifiers if i.id_type in types})


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where database_name = current_database() "
            "and schema_name = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
    )


def record_key_types(models_dir: Path | None = None) -> dict[str, str]:
    return dict(_record_key_types(models_dir or settings.dbt_project_dir() / "models"))


@functools.lru_cache(maxsize=4)
def _record_key_types(models_dir: Path) -> tuple[tuple[str, str], ...]:
    """``record_model -> id type of its record key`` from the staging models' identity meta.

    The meta is where identity reads which column is a record's key; a key column that is also
    one of the model's identifiers has that identifier's type, any other (``message_id``) is
    typed by its own name.
    """
    found: dict[str, str] = {}
    for path in sorted(models_dir.rglob("*.yml")):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            log.warning("cannot read %s: %s", path, exc)
            continue
        for model in doc.get("models") or []:
            meta = ((model.get("config") or {}).get("meta") or model.get("meta") or {}).get(
                "identity"
            )
            if not meta or not meta.get("record_key"):
                continue
            key = meta["record_key"]
            types = {i.get("column"): i.get("type") for i in meta.get("identifiers") or []}
            found[model["name"]] = types.get(key) or key
    return tuple(sorted(found.items()))


def unclaimed(
    con: duckdb.DuckDBPyConnection, found: set[Identifier], customer_ids: list[str]
) -> list[Identifier]:
    """Of identifiers seen on a person's raw records, those that are theirs to forget.

    Left out: values the identity graph gives to someone else or holds back (shared, blocked:
    ``test@test.com`` on a record of theirs is nobody's identifier), and values the blocked
    list matches, since a record loaded after the last build is not in the graph yet.
    """
    if not found:
        return []
    con.execute("create or replace temp table _forget_found (id_type varchar, id_value varchar)")
    rows = [(i.id_type, i.value) for i in found]
    con.executemany("insert into _forget_found values (?, ?)", rows)
    ours = customer_ids or [""]
    placeholders = ", ".join("?" for _ in ours)
    checks = [
        (  # another customer's identifier
            table_exists(con, *IDENTIFIERS_TABLE),
            "marts.customer_identifiers as x on x.id_type = f.id_type "
            f"and x.id_value = f.id_value where x.customer_id not in ({placeholders})",
            ours,
        ),
        (  # held back by identity: shared, blocked, invalid
            view_or_table_exists(con, "identity", "identity_quarantine"),
            "identity.identity_quarantine as x on x.id_type = f.id_type "
            "and (x.id_value = f.id_value or lower(trim(x.raw_value)) = lower(f.id_value))",
            [],
        ),
        (  # on the blocked list, for values identity has not seen yet
            table_exists(con, "identity", "identity_blocked_identifiers"),
            "identity.identity_blocked_identifiers as x on x.id_type in ('*', f.id_type) and ("
            "(x.match_type = 'exact' and lower(x.pattern) = lower(f.id_value)) or "
            "(x.match_type = 'regex' and regexp_matches(lower(f.id_value), x.pattern)))",
            [],
        ),
    ]
    excluded: set[tuple[str, str]] = set()
    for present, join, args in checks:
        if present:
            sql = f"select f.id_type, f.id_value from _forget_found as f join {join}"
            excluded |= set(con.execute(sql, args).fetchall())
    return sorted(i for i in found if (i.id_type, i.value) not in excluded)


def view_or_table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return table_exists(con, schema, name) or bool(
        con.execute(
            "select count(*) from duckdb_views() where database_name = current_database() "
            "and schema_name = ? and view_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def resolve(con: duckdb.DuckDBPyConnection, candidates: list[Identifier]) -> Resolution:
    """Every identifier of whoever holds one of ``candidates`` (the candidates included)."""
    result = Resolution(requested=candidates)
    typed = [c for c in candidates if c.id_type != "*"]
    result.identifiers = list(candidates)
    if not table_exists(con, *IDENTIFIERS_TABLE):
        log.warning(
            "marts.customer_identifiers is not built: forgetting %d identifier(s) only",
            len(candidates),
        )
        return result
    result.graph_available = True
    con.execute(PHONE_SQL_MACRO)
    customers: set[str] = set()
    for c in candidates:
        if c.id_type == "email":
            cond, args = "id_type = 'email' and lower(trim(id_value)) = ?", [c.value]
        elif c.id_type == "phone":
            cond, args = "id_type = 'phone' and cdp_phone_e164(id_value) = ?", [c.value]
        elif c.id_type == "*":
            cond, args = "id_type not in ('email', 'phone') and trim(id_value) = ?", [c.value]
        elif c.id_type == "customer_id":
            cond, args = "cast(customer_id as varchar) = ?", [c.value]
        else:
            cond, args = "id_type = ? and trim(cast(id_value as varchar)) = ?", [c.id_type, c.value]
        rows = con.execute(
            f"select distinct cast(customer_id as varchar) from marts.customer_identifiers "
            f"where {cond}",
            args,
        ).fetchall()
        customers.update(r[0] for r in rows)
    result.customer_ids = sorted(customers)
    if not customers:
        return result
    found = set(typed)
    placeholders = ", ".join("?" for _ in customers)
    rows = con.execute(
        "select id_type, cast(id_value as varchar) from marts.customer_identifiers "
        f"where cast(customer_id as varchar) in ({placeholders})",
        sorted(customers),
    ).fetchall()
    found.update(i for t, v in rows if (i := Identifier.of(t, v)) is not None)
    found.update(Identifier("customer_id", c) for c in customers)
    if table_exists(con, *RECORDS_TABLE):
        key_types = record_key_types()
        rows = con.execute(
            "select distinct record_model, cast(record_key as varchar) "
            "from identity.int_identity__record_customers "
            f"where cast(customer_id as varchar) in ({placeholders})",
            sorted(customers),
        ).fetchall()
        keys = set()
        for model, key in rows:
            id_type = key_types.get(model)
            if id_type and (i := Identifier.of(id_type, key)) is not None:
                keys.add(i)
        result.record_keys = sorted(keys - found)
    # an untyped request that the graph resolved is now known by its typed form
    result.identifiers = sorted(found)
    return result
