"""``cdp forget``: erase a person from the warehouse and the destinations, and keep receipts.

The steps, each leaving rows in ``ops.privacy_audit`` under one request id:

1. resolve: the identifier, through the identity graph, to every identifier of the person;
2. suppress: their hashes go on ``ops.suppression_list``, so connectors drop them on re-ingest;
3. delete_rows: every table of every schema (raw, operational, dbt-built) loses the rows that
   hold one of them: one receipt per table touched;
   delete_file_rows: the files this tool wrote outside the warehouse (collector event files,
   firing logs, Files exports) are rewritten without them: one receipt per file touched.
   Steps 1-3 commit in one transaction, after the files: when a file cannot be rewritten the
   warehouse deletion is rolled back, so a rerun still resolves every identifier;
4. destination: a deletion call per vendor and identifier, with the vendor's answer;
5. rebuild: ``dbt build`` of everything downstream of the touched sources;
6. snapshot: the profile snapshot the collector serves is re-exported, older versions removed;
7. verify: a fresh scan of every table and view; the count of rows still holding them;
   verify_files: the same for the files;
8. complete: the outcome.

The audit holds ``type:sha256`` of identifiers, never their values, so it survives the scan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from connectors.loader import connect
from orchestration import settings
from orchestration.privacy.destinations import Eraser, PersonRefs, configured_erasers
from orchestration.privacy.files import FileEraser, FileLocations, describe
from orchestration.privacy.normalize import Identifier, parse_identifier, sha256_hex
from orchestration.privacy.resolve import Resolution, resolve, table_exists, unclaimed
from orchestration.privacy.scan import Scanner
from orchestration.privacy.tables import (
    AuditEntry,
    add_suppressions,
    ensure_privacy_tables,
    new_request_id,
    utcnow,
    write_audit,
)

log = logging.getLogger(__name__)

Rebuild = Callable[[list[str]], int | None]
DBT_SCHEMAS_NOT_REBUILT = ("ops",)


def dbt_rebuild(db_path: Path) -> Rebuild:
    """The default rebuild: the project's dbt CLI, ``build --select <selection>``."""

    def run(selection: list[str]) -> int:
        from orchestration.dbt_cli import dbt_executable

        args = [dbt_executable(), "build"]
        if selection:
            args += ["--select", *selection]
        args += [
            "--project-dir",
            str(settings.dbt_project_dir()),
            "--profiles-dir",
            str(settings.dbt_profiles_dir()),
        ]
        env = {**os.environ, "CDP_DUCKDB_PATH": str(db_path)}
        proc = subprocess.run(
            args, cwd=settings.dbt_project_dir(), env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            log.error("dbt build after forget failed:\n%s", proc.stdout[-3000:])
        return proc.returncode

    return run


@dataclass
class ForgetReceipt:
    """What ``forget`` did: the request id and every audit row it wrote."""

    request_id: str
    identifiers: list[str]
    customers: int
    entries: list[AuditEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.status != "failed" for e in self.entries)

    @property
    def found(self) -> bool:
        return self.customers > 0 or any(
            e.step == "delete_rows" and (e.rows_affected or 0) > 0 for e in self.entries
        )

    def rows_deleted(self) -> dict[str, int]:
        return {
            e.table_name: e.rows_affected or 0
            for e in self.entries
            if e.step == "delete_rows" and e.table_name
        }

    def describe(self) -> str:
        status = "complete" if self.ok else "INCOMPLETE (see failed steps)"
        lines = [
            f"forget request {self.request_id}: {status}",
            f"  customers resolved: {self.customers}; identifiers (type:sha256 prefix): "
            + ", ".join(i[: i.index(":") + 13] for i in self.identifiers),
        ]
        lines += [f"  {e.describe()}" for e in self.entries]
        return "\n".join(lines)


class FilesIncomplete(RuntimeError):
    """Some file could not be rewritten; the warehouse deletion was rolled back for a rerun."""


class ForgetJob:
    """One person's erasure, step by step; ``process_deletion_requests`` batches the rebuild."""

    def __init__(
        self,
        db_path: Path,
        identifier: str,
        request_id: str | None = None,
        locations: FileLocations | None = None,
    ) -> None:
        self.db_path = db_path
        self.locations = locations or FileLocations.for_warehouse(db_path)
        self.request_id = request_id or new_request_id()
        self.text = identifier.strip()
        self.candidates = parse_identifier(identifier)
        self.resolution = Resolution(requested=self.candidates)
        self.refs = PersonRefs()
        self.entries: list[AuditEntry] = []
        self.touched: dict[str, int] = {}

    # -- helpers -----------------------------------------------------------------------------
    @property
    def redacted(self) -> list[str]:
        return [i.redacted() for i in self.resolution.identifiers]

    def _entry(self, step: str, **kwargs) -> AuditEntry:
        entry = AuditEntry(self.request_id, step, identifiers=self.redacted, **kwargs)
        self.entries.append(entry)
        return entry

    def _record(self, entries: Sequence[AuditEntry]) -> None:
        con = connect(self.db_path)
        try:
            ensure_privacy_tables(con)
            write_audit(con, entries)
        finally:
            con.close()

    # -- steps -------------------------------------------------------------------------------
    def erase_warehouse(self) -> None:
        """Resolve, suppress and delete in one transaction, with their receipts."""
        con = connect(self.db_path)
        try:
            ensure_privacy_tables(con)
            con.execute("begin transaction")
            self.resolution = resolve(con, self.candidates)
            r = self.resolution
            self._entry(
                "resolve",
                detail=(
                    f"{len(r.customer_ids)} customer(s), {len(r.identifiers)} identifier(s), "
                    f"{len(r.record_keys)} further record key(s); "
                    + ("identity graph used" if r.graph_available else "no identity graph built")
                ),
            )
            self._expand(con)
            self.refs = self._person_refs(con)
            # what sources carry; the CDP's own customer id is no source's identifier
            typed = [i for i in r.identifiers if i.id_type not in ("*", "customer_id")]
            added = add_suppressions(con, typed, self.request_id)
            self._entry(
                "suppress",
                table_name="ops.suppression_list",
                rows_affected=added,
                detail=f"{len(typed)} identifier hash(es) suppressed ({added} new)",
            )
            scanner = Scanner(con, [*r.identifiers, *r.record_keys])
            tables = scanner.tables()
            for table in tables:
                n = scanner.delete(table)
                if n:
                    self.touched[table] = n
                    self._entry("delete_rows", table_name=table, rows_affected=n)
            self._entry(
                "scan",
                rows_affected=sum(self.touched.values()),
                detail=f"{len(tables)} tables scanned, {len(self.touched)} held the person",
            )
            file_entries = self._erase_files(con)
            if any(e.status == "failed" for e in file_entries):
                raise FilesIncomplete("some files could not be rewritten")
            write_audit(con, self.entries)
            con.execute("commit")
            _checkpoint(con)
        except FilesIncomplete:
            con.execute("rollback")
            self.touched = {}
            self.entries = [*file_entries]
            failed = [e.table_name for e in file_entries if e.status == "failed"]
            self._entry(
                "delete_rows",
                status="failed",
                detail="rolled back, the warehouse is unchanged: could not rewrite "
                + ", ".join(str(f) for f in failed)
                + "; rerun once fixed (files already rewritten stay so)",
            )
            ensure_privacy_tables(con)
            write_audit(con, self.entries)
            raise
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("rollback")
            raise
        finally:
            con.close()

    def _erase_files(self, con: duckdb.DuckDBPyConnection) -> list[AuditEntry]:
        """Rewrite the files outside the warehouse; the connector's offsets move in ``con``."""
        r = self.resolution
        eraser = FileEraser([*r.identifiers, *r.record_keys], self.locations)
        try:
            outcomes = eraser.erase()
            moved = 0 if any(o.status != "ok" for o in outcomes) else eraser.move_cursor(con)
        finally:
            eraser.close()
        entries = [
            self._entry(
                "delete_file_rows",
                status=o.status,
                table_name=o.path,
                rows_affected=o.removed,
                detail=describe(o),
            )
            for o in outcomes
        ]
        if moved:
            entries.append(
                self._entry(
                    "delete_file_rows",
                    table_name="ops.connector_state",
                    rows_affected=moved,
                    detail=f"events connector: byte offsets of {moved} rewritten file(s) moved",
                )
            )
        return entries

    def _expand(self, con: duckdb.DuckDBPyConnection) -> None:
        """Add identifiers their raw records carry that the identity graph does not know yet.

        Records loaded since the last build are not in the graph: their new email or phone
        would survive on the suppression list's blind side. One round of closure over the
        declared identifier columns of the raw rows about to go, guarded by ``unclaimed``.
        """
        r = self.resolution
        known = set(r.identifiers) | set(r.record_keys)
        scanner = Scanner(con, list(known))
        found: set[Identifier] = set()
        for table in scanner.tables():
            if table.startswith("raw_"):
                found |= scanner.identifiers_of_matches(table)
        new = unclaimed(con, found - known, r.customer_ids)
        if new:
            r.identifiers = sorted({*r.identifiers, *new})
        self._entry(
            "expand",
            detail=f"{len(new)} further identifier(s) found on their raw records "
            f"({len(found - known) - len(new)} left out as someone else's, shared or blocked)",
        )

    def _person_refs(self, con: duckdb.DuckDBPyConnection) -> PersonRefs:
        """Raw values a destination may hold the person under (read before rows go)."""
        r = self.resolution
        refs = PersonRefs(emails=r.of_type("email"), phones=r.of_type("phone"))
        for i in r.identifiers:
            if i.id_type not in ("email", "phone", "*"):
                refs.ids.setdefault(i.id_type, []).append(i.value)
        keys = sorted({*r.customer_ids, *(i.value for i in r.identifiers)})
        if (
            keys
            and table_exists(con, "ops", "sync_state")
            and table_exists(con, "ops", "sync_runs")
        ):
            placeholders = ", ".join("?" for _ in keys)
            rows = con.execute(
                "select distinct r.destination, s.dest_id from ops.sync_state as s "
                "join (select distinct sync_name, destination from ops.sync_runs) as r "
                "using (sync_name) "
                f"where s.dest_id is not null and s.row_key in ({placeholders})",
                keys,
            ).fetchall()
            for destination, dest_id in rows:
                refs.dest_ids.setdefault(destination, []).append(dest_id)
        return refs

    def erase_destinations(self, erasers: Sequence[Eraser] | None = None) -> None:
        skipped: list[str] = []
        if erasers is None:
            erasers, skipped = configured_erasers()
        new: list[AuditEntry] = []
        for name in skipped:
            new.append(
                self._entry(
                    "destination", status="skipped", destination=name, detail="no credentials"
                )
            )
        for eraser in erasers:
            try:
                results = eraser.erase(self.refs)
            except Exception as exc:  # one vendor failing must not hide the others' receipts
                log.exception("deletion in %s failed", eraser.name)
                results = []
                new.append(
                    self._entry(
                        "destination",
                        status="failed",
                        destination=eraser.name,
                        detail=f"{type(exc).__name__}",
                    )
                )
            for res in results:
                entry = AuditEntry(
                    self.request_id,
                    "destination",
                    status="ok" if res.ok else "failed",
                    identifiers=[res.ref] if res.ref else [],
                    destination=res.destination,
                    response=f"{res.status} {res.response}".strip(),
                    detail=res.action,
                )
                self.entries.append(entry)
                new.append(entry)
        self._record(new)

    def rebuild_selection(self) -> list[str]:
        """dbt selectors for what depends on the tables that lost rows."""
        selection = set()
        for table in self.touched:
            schema, name = table.split(".", 1)
            if schema.startswith("raw_"):
                selection.add(f"source:{schema}.{name}+")
            elif schema not in DBT_SCHEMAS_NOT_REBUILT:
                selection.add(f"{name}+")
        return sorted(selection)

    def record_rebuild(self, selection: list[str], code: int | None, error: str | None) -> None:
        if error is not None:
            status, detail = "failed", error
        elif code is None:
            status, detail = "skipped", "no rebuild requested"
        else:
            status = "ok" if code == 0 else "failed"
            detail = f"dbt build exit code {code}; select: {' '.join(selection) or '(none)'}"
        self._record([self._entry("rebuild", status=status, detail=detail)])

    def verify(self) -> int:
        """Rows still holding the person, in every table and view, after everything ran."""
        con = connect(self.db_path)
        try:
            r = self.resolution
            found = Scanner(con, [*r.identifiers, *r.record_keys]).scan()
            _checkpoint(con)  # what the rebuild replaced goes from the file too
        finally:
            con.close()
        residual = sum(found.values())
        detail = "none left" if not found else "still held in: " + ", ".join(sorted(found))
        status = "ok" if not found else "failed"
        entries = [self._entry("verify", status=status, rows_affected=residual, detail=detail)]
        eraser = FileEraser([*r.identifiers, *r.record_keys], self.locations)
        try:
            in_files = eraser.residual()
        finally:
            eraser.close()
        entries.append(
            self._entry(
                "verify_files",
                status="ok" if not in_files else "failed",
                rows_affected=sum(in_files.values()),
                detail="none left in files"
                if not in_files
                else "still in: " + ", ".join(sorted(in_files)),
            )
        )
        self._record(entries)
        return residual + sum(in_files.values())

    def finish(self) -> ForgetReceipt:
        failed = [e.step for e in self.entries if e.status == "failed"]
        detail = "all steps ok" if not failed else "failed steps: " + ", ".join(sorted(set(failed)))
        self._record(
            [self._entry("complete", status="ok" if not failed else "failed", detail=detail)]
        )
        return ForgetReceipt(
            self.request_id, self.redacted, len(self.resolution.customer_ids), list(self.entries)
        )


_DEFAULT = object()


def _checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Deleted rows leave the file only when a checkpoint vacuums them; DuckDB would do it
    later on its own, so a busy database is a warning, not a failed erasure."""
    try:
        con.execute("checkpoint")
    except duckdb.Error as exc:
        log.warning("checkpoint after forget deferred: %s", exc)


def snapshot_dir(db_path: Path) -> Path:
    """Where the serving side's profile snapshot lives (the serve package's default)."""
    configured = os.environ.get("CDP_SNAPSHOT_DIR", "").strip()
    return Path(configured) if configured else db_path.parent / "snapshot"


def refresh_snapshot(jobs: Sequence[ForgetJob], db_path: Path) -> None:
    """Re-export the profile snapshot the collector serves, dropping every older version.

    The snapshot is a copy of the marts outside the warehouse: without this the profile API
    would keep answering for a forgotten person until the next pipeline run.
    """
    out = snapshot_dir(db_path)
    if not (out / "current").exists():
        for job in jobs:
            job._record([job._entry("snapshot", status="skipped", detail="no profile snapshot")])
        return
    try:
        from orchestration.serve.snapshot import refresh

        version = refresh(db_path, out, keep_versions=1)
        status, detail = "ok", f"profile snapshot re-exported as {version.name}, older removed"
    except Exception as exc:
        log.exception("profile snapshot refresh after forget failed")
        status, detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
    for job in jobs:
        job._record([job._entry("snapshot", status=status, detail=detail)])


def run_rebuild(jobs: Sequence[ForgetJob], rebuild: Rebuild | None) -> None:
    """One rebuild for a batch of jobs; each job's audit gets the outcome."""
    selection = sorted({s for job in jobs for s in job.rebuild_selection()})
    code: int | None = None
    error: str | None = None
    if rebuild is not None and selection:
        try:
            code = rebuild(selection)
            code = 0 if code is None else code
        except Exception as exc:
            log.exception("rebuild after forget failed")
            error = f"{type(exc).__name__}: {exc}"[:300]
    elif rebuild is not None:
        code = 0
    for job in jobs:
        job.record_rebuild(selection, code, error)


def forget(
    identifier: str,
    db_path: str | Path | None = None,
    destinations: bool = True,
    rebuild: Rebuild | None | object = _DEFAULT,
    erasers: Sequence[Eraser] | None = None,
    request_id: str | None = None,
) -> ForgetReceipt:
    """Erase whoever holds ``identifier`` everywhere; returns the receipt.

    ``rebuild`` receives dbt selectors and returns dbt's exit code (default: the dbt CLI with
    the project's profile; ``None`` skips it). ``erasers`` replaces the destinations configured
    from the environment; ``destinations=False`` calls none.
    """
    path = Path(db_path) if db_path is not None else settings.duckdb_path()
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: nothing to forget there")
    job = ForgetJob(path, identifier, request_id)
    record_request(path, job, source="cli")
    try:
        job.erase_warehouse()
    except FilesIncomplete:
        receipt = job.finish()
        close_request(path, job.request_id, receipt)
        return receipt
    if destinations:
        job.erase_destinations(erasers)
    else:
        job._record([job._entry("destination", status="skipped", detail="not requested")])
    run_rebuild([job], dbt_rebuild(path) if rebuild is _DEFAULT else rebuild)  # type: ignore[arg-type]
    refresh_snapshot([job], path)
    job.verify()
    receipt = job.finish()
    close_request(path, job.request_id, receipt)
    return receipt


def record_request(path: Path, job: ForgetJob, source: str) -> None:
    """A ``cdp forget`` is a deletion request too: logged, by hash, as it starts."""
    con = connect(path)
    try:
        ensure_privacy_tables(con)
        con.execute(
            "insert into ops.deletion_requests (request_id, identifier, identifier_hash, source, "
            "requested_at, status) values (?, null, ?, ?, ?, 'processing') "
            "on conflict do nothing",
            [job.request_id, sha256_hex(job.text), source, utcnow()],
        )
    finally:
        con.close()


def close_request(path: Path, request_id: str, receipt: ForgetReceipt) -> None:
    if not receipt.found:
        status = "not_found"
    else:
        status = "done" if receipt.ok else "partial"
    con = connect(path)
    try:
        con.execute(
            "update ops.deletion_requests set status = ?, processed_at = ?, identifier = null, "
            "message = ? where request_id = ?",
            [status, utcnow(), f"{len(receipt.entries)} audit rows", request_id],
        )
    finally:
        con.close()
