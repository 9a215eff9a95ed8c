"""Runs one sync in a separate process, so tests can SIGKILL it at arbitrary points.

Usage: ``python -m tests.reverse_etl.sync_worker DB_PATH SYNC_NAME META_JSON``.
"""

from __future__ import annotations

import json
import sys

from reverse_etl.config import SyncConfig
from reverse_etl.engine import run_sync


def main() -> int:
    db_path, name, meta = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = run_sync(SyncConfig.from_meta(name, meta), db_path=db_path)
    sys.stdout.write(result.describe() + "\n")
    return 0 if result.status in ("success", "partial") else 1


if __name__ == "__main__":
    sys.exit(main())
