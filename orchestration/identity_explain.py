"""Why are two identifiers one customer? The chain of source records that links them.

Identity resolution (dbt_project/models/identity/) keeps, for every edge of the identity graph,
one record that carried both identifiers (``int_identity__edges.example_record_id``, whose source,
model and key are in ``int_identity__record_customers``). A breadth-first walk over the edges of
the customer's component, in Python, gives the shortest chain: small components make this instant,
and keeping it out of SQL avoids a recursive query per lookup.

Identifiers are written ``type:value`` (``email:ada@example.com``) or as a bare value, which is
matched against every type after the same normalization dbt applies to emails and phones.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import duckdb

# the dbt selection that builds identity resolution, its outputs and its state
IDENTITY_SELECT = (
    "+identity_id_registry +customer_identifiers +identity_quarantine "
    "+int_identity__record_customers +int_identity__runs"
)

_TYPED = re.compile(r"^([a-z][a-z0-9_]*):(.+)$")


class UnknownIdentifier(LookupError):
    """The identifier is not held by any customer (or is ambiguous across types)."""


def candidates(identifier: str, default_country_code: str = "1") -> list[tuple[str | None, str]]:
    """(id_type or None, value) pairs an identifier may be, normalized as dbt normalizes them."""
    text = identifier.strip()
    match = _TYPED.match(text)
    id_type, value = (match.group(1), match.group(2).strip()) if match else (None, text)
    values = [(id_type, value)]
    if id_type in (None, "email") and "@" in value:
        values.append(("email", value.lower()))
    digits = re.sub(r"[^0-9]", "", value)
    if id_type in (None, "phone") and digits and not re.search(r"[A-Za-z@]", value):
        if value.startswith("+"):
            values.append(("phone", "+" + digits))
        elif len(digits) == 10:
            values.append(("phone", f"+{default_country_code}{digits}"))
        elif len(digits) == 11 and digits.startswith(default_country_code):
            values.append(("phone", "+" + digits))
    return values


def _resolve(con: duckdb.DuckDBPyConnection, identifier: str) -> tuple[int, int, str, str]:
    """(node_id, component_id, id_type, id_value) of a resolved, not held-back identifier."""
    found: dict[int, tuple[int, int, str, str]] = {}
    for id_type, value in candidates(identifier):
        rows = con.execute(
            """
            select i.node_id, c.component_id, i.id_type, i.id_value
            from identity.int_identity__identifiers as i
            inner join identity.int_identity__components as c on c.node_id = i.node_id
            where i.id_value = ? and (? is null or i.id_type = ?) and c.holdback_reason is null
            """,
            [value, id_type, id_type],
        ).fetchall()
        for row in rows:
            found[row[0]] = row
    if not found:
        raise UnknownIdentifier(f"no customer holds {identifier!r}")
    if len(found) > 1:
        types = ", ".join(sorted(f"{r[2]}:{r[3]}" for r in found.values()))
        raise UnknownIdentifier(f"{identifier!r} is ambiguous ({types}); write it as type:value")
    return next(iter(found.values()))


def explain(db_path: str | Path, identifier_a: str, identifier_b: str) -> list[dict]:
    """The shortest chain of records linking two identifiers of one customer.

    Each step is ``{"from", "to", "source", "record_model", "record_key"}``: a record that carried
    both identifiers. An empty list means they are not the same customer (or are the same
    identifier). Raises UnknownIdentifier when an identifier is held by no customer.
    """
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        node_a, component_a, *_ = _resolve(con, identifier_a)
        node_b, component_b, *_ = _resolve(con, identifier_b)
        if component_a != component_b or node_a == node_b:
            return []
        nodes = {
            node_id: f"{id_type}:{id_value}"
            for node_id, id_type, id_value in con.execute(
                """
                select i.node_id, i.id_type, i.id_value
                from identity.int_identity__components as c
                inner join identity.int_identity__identifiers as i on i.node_id = c.node_id
                where c.component_id = ? and c.holdback_reason is null
                """,
                [component_a],
            ).fetchall()
        }
        edges = con.execute(
            """
            select e.node_a, e.node_b, e.example_record_id
            from identity.int_identity__edges as e
            inner join identity.int_identity__components as ca on ca.node_id = e.node_a
            inner join identity.int_identity__components as cb on cb.node_id = e.node_b
            where ca.component_id = ? and cb.component_id = ?
                and ca.holdback_reason is null and cb.holdback_reason is null
            """,
            [component_a, component_a],
        ).fetchall()
        path = _shortest_path(node_a, node_b, edges)
        # the path's records by their record_id (one row per record in record_customers)
        record_ids = sorted({record for _, _, record in path})
        records = {
            record_id: (source, record_model, record_key)
            for record_id, source, record_model, record_key in con.execute(
                """
                select record_id, source, record_model, record_key
                from identity.int_identity__record_customers
                where record_id in (select unnest(?::ubigint[]))
                """,
                [record_ids],
            ).fetchall()
        }
    finally:
        con.close()
    steps = []
    for left, right, record in path:
        source, record_model, record_key = records[record]
        steps.append(
            {
                "from": nodes[left],
                "to": nodes[right],
                "source": source,
                "record_model": record_model,
                "record_key": record_key,
            }
        )
    return steps


def _shortest_path(
    start: int, goal: int, edges: list[tuple[int, int, str]]
) -> list[tuple[int, int, str]]:
    neighbours: dict[int, list[tuple[int, str]]] = {}
    for a, b, record in edges:
        neighbours.setdefault(a, []).append((b, record))
        neighbours.setdefault(b, []).append((a, record))
    previous: dict[int, tuple[int, str]] = {}
    queue, seen = deque([start]), {start}
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for nxt, record in sorted(neighbours.get(node, []), key=lambda item: item[1]):
            if nxt not in seen:
                seen.add(nxt)
                previous[nxt] = (node, record)
                queue.append(nxt)
    if goal not in seen:
        return []
    path = []
    node = goal
    while node != start:
        prev, record = previous[node]
        path.append((prev, node, record))
        node = prev
    return path[::-1]


def customer_identifiers(db_path: str | Path, identifier: str) -> dict:
    """The customer holding an identifier and all its identifiers with their sources."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        _, _, id_type, id_value = _resolve(con, identifier)
        rows = con.execute(
            """
            select ci.customer_id, ci.id_type, ci.id_value, ci.sources,
                   ci.first_seen_at, ci.last_seen_at
            from marts.customer_identifiers as ci
            where ci.customer_id = (
                select customer_id from marts.customer_identifiers
                where id_type = ? and id_value = ?
            )
            order by ci.id_type, ci.id_value
            """,
            [id_type, id_value],
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise UnknownIdentifier(f"{identifier!r} is over its customer's limit (see quarantine)")
    return {
        "customer_id": rows[0][0],
        "identifiers": [
            {
                "id_type": r[1],
                "id_value": r[2],
                "sources": r[3].split(","),
                "first_seen_at": r[4].isoformat() if r[4] else None,
                "last_seen_at": r[5].isoformat() if r[5] else None,
            }
            for r in rows
        ],
    }
