"""The ``cdp`` command: one entry point for every stage, the demo, the UI and the servers.

Each sub-command imports its implementation lazily, so ``cdp --help`` is instant and a missing
optional piece only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from orchestration import settings

COMMANDS = {
    "demo": "start local fake APIs with generated data; run ingest -> dbt build -> syncs once",
    "run": "materialize the whole asset graph once, in process, through Dagster",
    "ingest": "load sources into raw_<source>.* tables (all, or the SOURCEs named)",
    "build": "dbt build of the whole project (staging -> identity -> marts -> segments)",
    "sync": "run reverse-ETL syncs (all, or the NAMEs given); --dry-run shows the plan only",
    "profile": "print the unified profile of whoever holds IDENTIFIER (JSON)",
    "forget": "privacy deletion of the person holding IDENTIFIER, everywhere",
    "ui": "start the Dagster UI (webserver + daemon) on 127.0.0.1",
    "collect": "serve the event collector (Segment HTTP API) and the profile API",
    "bench": "run the benchmarks and print figures",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdp",
        description="composable-cdp: a warehouse-native Customer Data Platform.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help=COMMANDS["demo"])
    demo.add_argument("--people", type=int, default=2000, help="people to generate (2000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--fault-rate", type=float, default=0.0, help="share of failing API calls")
    demo.add_argument("--keep-serving", action="store_true", help="keep the fake APIs up after")

    sub.add_parser("run", help=COMMANDS["run"])

    ingest = sub.add_parser("ingest", help=COMMANDS["ingest"])
    ingest.add_argument("sources", nargs="*", metavar="SOURCE")

    build = sub.add_parser("build", help=COMMANDS["build"])
    build.add_argument(
        "--select", default=None, help="a dbt selection, run with plain dbt (default: everything)"
    )

    sync = sub.add_parser("sync", help=COMMANDS["sync"])
    sync.add_argument("names", nargs="*", metavar="NAME")
    sync.add_argument("--dry-run", action="store_true")

    profile = sub.add_parser("profile", help=COMMANDS["profile"])
    profile.add_argument("identifier", metavar="IDENTIFIER", help="email, phone, or type:value")

    forget = sub.add_parser("forget", help=COMMANDS["forget"])
    forget.add_argument("identifier", metavar="IDENTIFIER")
    forget.add_argument(
        "--no-destinations", action="store_true", help="do not call destination delete APIs"
    )

    ui = sub.add_parser("ui", help=COMMANDS["ui"])
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)

    collect = sub.add_parser("collect", help=COMMANDS["collect"])
    collect.add_argument("--host", default="127.0.0.1")
    collect.add_argument("--port", type=int, default=8088)

    bench = sub.add_parser("bench", help=COMMANDS["bench"])
    bench.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (all)")
    return parser


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def _cmd_ingest(args: argparse.Namespace) -> int:
    from connectors.ingest import ingest

    results = ingest(sources=args.sources or None)
    for r in results:
        print(
            f"{r.source + '.' + r.stream:<20} {r.status:<8} read={r.rows_read} "
            f"loaded={r.rows_loaded} quarantined={r.rows_quarantined} "
            f"pages={r.pages} retries={r.retries} "
            f"{r.duration_s:.2f}s {r.message or ''}".rstrip()
        )
    return 1 if any(r.status == "failed" for r in results) else 0


def _cmd_build(args: argparse.Namespace) -> int:
    if args.select:  # an analyst's dbt selection: plain dbt, no Dagster run
        from orchestration.dbt_cli import dbt_build

        return dbt_build(select=args.select)
    from orchestration.runner import DBT_SELECTION, run_all

    # through Dagster, so the run shows in the UI and the serving snapshot follows the build
    summary = run_all(
        f'{DBT_SELECTION} or key:"serving/profile_snapshot"',
        log_level="DEBUG" if args.verbose else "WARNING",
    )
    print(summary.describe())
    return 0 if summary.success else 1


def _cmd_sync(args: argparse.Namespace) -> int:
    from reverse_etl.engine import run_syncs

    results = run_syncs(names=args.names or None, dry_run=args.dry_run)
    for r in results:
        print(r.describe() if hasattr(r, "describe") else r)
    return 1 if any(r.status == "failed" for r in results) else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from orchestration.runner import run_all

    summary = run_all(log_level="DEBUG" if args.verbose else "WARNING")
    print(summary.describe() if hasattr(summary, "describe") else summary)
    return 0 if summary.success else 1


def _cmd_profile(args: argparse.Namespace) -> int:
    from orchestration.serve.profiles import lookup

    profile = lookup(args.identifier)
    if profile is None:
        print(f"no customer holds {args.identifier!r}", file=sys.stderr)
        return 1
    _print_json(profile)
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    from orchestration.privacy import forget

    receipt = forget(args.identifier, destinations=not args.no_destinations)
    print(receipt.describe() if hasattr(receipt, "describe") else receipt)
    return 0 if getattr(receipt, "ok", True) else 1


def _cmd_ui(args: argparse.Namespace) -> int:
    from orchestration.ui import start_ui

    return start_ui(host=args.host, port=args.port) or 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from orchestration.serve.app import serve

    serve(host=args.host, port=args.port)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.demo.run import run_demo

    return run_demo(
        verbose=args.verbose,
        people=args.people,
        seed=args.seed,
        fault_rate=args.fault_rate,
        keep_serving=args.keep_serving,
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from orchestration.bench import run_benchmarks

    return run_benchmarks(args.names or None)


HANDLERS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "ingest": _cmd_ingest,
    "build": _cmd_build,
    "sync": _cmd_sync,
    "profile": _cmd_profile,
    "forget": _cmd_forget,
    "ui": _cmd_ui,
    "collect": _cmd_collect,
    "bench": _cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the commands print their own summaries; library logs stay quiet unless asked for
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("connectors").setLevel(logging.INFO)
    settings.export_env()
    try:
        return HANDLERS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:
        if args.verbose:
            raise
        # a user-facing command reports what went wrong in one line; -v shows the traceback
        print(f"cdp {args.command}: {exc}", file=sys.stderr)
        print("(run `cdp -v ...` for the full traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
