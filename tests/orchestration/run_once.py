"""Run ``run_all`` on the asset keys given as arguments and print the summary as JSON.

The concurrency test starts two of these at the same moment, as two users running ``cdp run``.
"""

from __future__ import annotations

import json
import sys
import time

from orchestration.runner import run_all


def main(argv: list[str]) -> int:
    started = time.time()
    summary = run_all(argv or None)
    print(
        json.dumps(
            {
                "success": summary.success,
                "run_id": summary.run_id,
                "failure": summary.failure,
                "materialized": sorted(summary.assets),
                "started": started,
                "finished": time.time(),
            }
        )
    )
    return 0 if summary.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
