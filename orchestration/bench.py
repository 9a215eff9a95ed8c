"""`cdp bench`: run the scripts under benchmarks/ (each has a ``main()`` that prints figures)."""

from __future__ import annotations

import runpy
import time

from orchestration import settings


def available() -> dict[str, str]:
    folder = settings.project_root() / "benchmarks"
    return {p.stem.removeprefix("bench_"): str(p) for p in sorted(folder.glob("bench_*.py"))}


def run_benchmarks(names: list[str] | None = None) -> int:
    scripts = available()
    unknown = sorted(set(names or []) - set(scripts))
    if unknown:
        print(f"unknown benchmarks: {', '.join(unknown)}; available: {', '.join(scripts)}")
        return 2
    failed = 0
    for name, path in scripts.items():
        if names and name not in names:
            continue
        print(f"\n=== benchmark: {name} ===", flush=True)
        started = time.perf_counter()
        try:
            module = runpy.run_path(path, run_name="cdp_bench")
            module["main"]()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed += 1
            print(f"benchmark {name} failed: {exc!r}")
        print(f"=== {name} took {time.perf_counter() - started:.1f}s ===", flush=True)
    return 1 if failed else 0
