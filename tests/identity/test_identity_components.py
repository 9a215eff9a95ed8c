"""The component step on its own: identity_connected_components (through the run-operation
identity_components_into) against a plain union-find, on graphs the demo data never makes: long
chains with ids in decreasing and zigzag order (deep hook trees, many contraction rounds), cycles,
self loops, duplicate and reversed edges, and a random sparse graph with 64-bit ids."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from benchmarks.bench_identity import components_into

UBIGINT_MAX = 2**64 - 1


def _graphs(rng: random.Random) -> list[tuple[int, int]]:
    """Several disjoint graphs in one edge list."""
    edges: list[tuple[int, int]] = []
    # a path whose ids fall along it: every node hooks to the next, the hook tree is one line
    falling = list(range(10_500, 10_000, -1))
    edges += list(zip(falling, falling[1:], strict=False))
    # a path zigzagging between small and large ids
    zigzag = [20_000 + (i // 2 if i % 2 == 0 else 1_000 - i) for i in range(400)]
    edges += list(zip(zigzag, zigzag[1:], strict=False))
    # a cycle, a star, a self loop on a node with no other edge, duplicates both ways
    cycle = [30_000 + i for i in (7, 3, 9, 1, 5, 8, 2)]
    edges += list(zip(cycle, cycle[1:] + cycle[:1], strict=False))
    edges += [(40_000, 40_000 + i) for i in range(1, 30)]
    edges += [(50_000, 50_000), (60_001, 60_002), (60_002, 60_001), (60_001, 60_002)]
    # a random sparse graph over 64-bit ids (the real node ids are hashes)
    ids = list({rng.randrange(1, UBIGINT_MAX) for _ in range(3_000)})
    edges += [(rng.choice(ids), rng.choice(ids)) for _ in range(2_400)]
    return edges


def _expected(edges: list[tuple[int, int]]) -> dict[int, int]:
    """node -> smallest node of its component, for nodes that are not their component's smallest."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in list(parent) if find(n) != n}


def _components(db_path: Path, edges, dbt_vars: dict | None = None) -> dict[int, int]:
    con = duckdb.connect(str(db_path))
    try:
        con.execute("create or replace table main.e (node_a ubigint, node_b ubigint)")
        con.executemany("insert into main.e values (?, ?)", edges)
    finally:
        con.close()
    components_into(db_path, "main.e", "main.out", dbt_vars)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = con.execute("select node_id, component_id from main.out").fetchall()
        leftovers = con.execute(
            "select count(*) from duckdb_tables() where table_name like 'identity_components_into%'"
        ).fetchone()[0]
    finally:
        con.close()
    assert leftovers == 0, "work tables left behind"
    result = dict(rows)
    assert len(result) == len(rows), "a node with two components"
    return result


def test_duckdb_components_equal_union_find(tmp_path: Path) -> None:
    edges = _graphs(random.Random(4))
    assert _components(tmp_path / "cc.duckdb", edges) == _expected(edges)


def test_portable_components_equal_union_find(tmp_path: Path) -> None:
    # the recursive CTE is quadratic in component size: small graphs only
    edges = [e for e in _graphs(random.Random(5)) if e[0] >= 30_000 and e[1] >= 30_000]
    got = _components(tmp_path / "portable.duckdb", edges, {"identity_components_impl": "portable"})
    # the portable default lists every node; the fast path only those not their own component
    assert {n: c for n, c in got.items() if n != c} == _expected(edges)


def test_components_that_do_not_converge_fail_loudly(tmp_path: Path) -> None:
    db_path = tmp_path / "cc.duckdb"
    chain = list(range(2_000, 1_000, -1))
    con = duckdb.connect(str(db_path))
    try:
        con.execute(
            "create table main.e as select unnest($1) as node_a, unnest($2) as node_b",
            [chain[:-1], chain[1:]],
        )
    finally:
        con.close()
    with pytest.raises(RuntimeError, match="did not converge in 2 rounds"):
        components_into(db_path, "main.e", "main.out", {"identity_max_component_rounds": 2})
