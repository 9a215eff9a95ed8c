"""Run ``run_all`` on the asset keys given as arguments and print the summary as JSON.

The concurrency test starts two of these at the same moment, as two users running ``cdp run``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from orchestration.runner import run_all


def main(argv: list[str]) -> int:
    # the warehouse lock's acquire/release lines go to stderr, for the test to compare the runs
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    lock_log = logging.getLogger("orchestration.defs.resources")
    lock_log.addHandler(handler)
    lock_log.setLevel(logging.DEBUG)
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
