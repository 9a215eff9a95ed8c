"""A dbt process that imports dbt first and runs one command when told to, so a benchmark can time
the command apart from the interpreter's start and dbt's imports (2-3.5 s here, the same for every
dbt command whatever it does).

Run as a script by ``benchmarks.bench_identity.timed_dbt``, with the warehouse path and a result
file as arguments and dbt's environment already set. It imports dbt (and DuckDB), says ``ready`` on
its standard output, reads the dbt arguments as one JSON line from its standard input, then runs
them through ``dbtRunner`` (the same click command the ``dbt`` executable runs) and forces a
checkpoint of the warehouse: the clock stops only when every write of the build is in the database
file, as it is when a ``dbt`` process has exited. dbt's own console output goes to
``dbt_logs/worker_stdout.log`` so it cannot mix with the protocol. The result file gets
``{"success": ..., "seconds": ...}``. Python's garbage collector is tuned as in ``cdp-dbt``
(orchestration/dbt_launcher.py), the command line the project runs dbt with.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    db_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    log_dir = db_path.parent / "dbt_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    console = open(log_dir / "worker_stdout.log", "a")  # noqa: SIM115 - open for the process
    os.dup2(console.fileno(), sys.stdout.fileno())
    sys.stdout = console

    from orchestration.dbt_launcher import tune_gc

    tune_gc()
    import duckdb
    from dbt.cli.main import dbtRunner

    gc.freeze()

    protocol.write("ready\n")
    protocol.flush()
    args = json.loads(sys.stdin.readline())
    started = time.perf_counter()
    result = dbtRunner().invoke(args)
    # dbt-duckdb closes the database when its last connection closes, which checkpoints; if it
    # is still open in this process, the same instance is returned and CHECKPOINT forces it
    con = duckdb.connect(str(db_path))
    try:
        con.execute("checkpoint")
    finally:
        con.close()
    seconds = time.perf_counter() - started
    gc.unfreeze()
    result_path.write_text(json.dumps({"success": bool(result.success), "seconds": seconds}))
    protocol.write("done\n")
    protocol.flush()
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
