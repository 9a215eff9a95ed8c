"""Deletion requests filed in the warehouse or dropped as a file, processed by a schedule.

A request is a row of ``ops.deletion_requests`` (``submit_deletion_request``, or an insert by any
tool) or a line of a request file (plain identifiers or JSON lines with ``identifier``), which is
moved into the table and emptied so the raw identifiers do not linger on disk. Processing runs
each pending request through the forget steps, rebuilds dbt once for the whole batch, then
verifies each person and closes the request; its identifier is nulled, its hash kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from connectors.loader import connect
from orchestration import settings
from orchestration.privacy.destinations import Eraser, configured_erasers
from orchestration.privacy.forget import (
    _DEFAULT,
    ForgetJob,
    ForgetReceipt,
    Rebuild,
    close_request,
    dbt_rebuild,
    refresh_snapshot,
    run_rebuild,
)
from orchestration.privacy.normalize import sha256_hex
from orchestration.privacy.tables import ensure_privacy_tables, new_request_id, utcnow

log = logging.getLogger(__name__)


def submit_deletion_request(
    identifier: str, db_path: str | Path | None = None, source: str = "table"
) -> str:
    """File a request for the next processing run; returns its request id."""
    path = Path(db_path) if db_path is not None else settings.duckdb_path()
    request_id = new_request_id()
    con = connect(path)
    try:
        ensure_privacy_tables(con)
        con.execute(
            "insert into ops.deletion_requests (request_id, identifier, identifier_hash, source, "
            "requested_at, status) values (?, ?, ?, ?, ?, 'pending')",
            [request_id, identifier.strip(), sha256_hex(identifier.strip()), source, utcnow()],
        )
    finally:
        con.close()
    return request_id


def read_request_file(path: Path) -> list[str]:
    """Identifiers in a request file: one per line, plain or ``{"identifier": ...}``."""
    found = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            try:
                value = json.loads(text).get("identifier")
            except (json.JSONDecodeError, AttributeError):
                value = None
            if not value:
                raise ValueError(f"{path.name} line {n}: a JSON line needs an 'identifier'")
            text = str(value).strip()
        found.append(text)
    return found


def import_request_file(path: Path, db_path: Path) -> int:
    """Move a file's requests into the table (then empty the file); returns how many."""
    identifiers = read_request_file(path)
    if identifiers:
        for identifier in identifiers:
            submit_deletion_request(identifier, db_path, source=f"file:{path.name}")
    path.write_text("")
    return len(identifiers)


def process_deletion_requests(
    db_path: str | Path | None = None,
    files: Sequence[str | Path] = (),
    destinations: bool = True,
    rebuild: Rebuild | None | object = _DEFAULT,
    erasers: Sequence[Eraser] | None = None,
) -> list[ForgetReceipt]:
    """Process every pending request (after importing ``files``); one receipt per request."""
    path = Path(db_path) if db_path is not None else settings.duckdb_path()
    for file in files:
        file = Path(file)
        if file.exists():
            log.info(
                "imported %d deletion request(s) from %s", import_request_file(file, path), file
            )
    con = connect(path)
    try:
        ensure_privacy_tables(con)
        pending = con.execute(
            "select request_id, identifier from ops.deletion_requests "
            # 'processing' with the identifier still there: a run that died; the warehouse
            # step is one transaction, so doing it again is safe
            "where status in ('pending', 'processing') and identifier is not null "
            "order by requested_at, request_id"
        ).fetchall()
    finally:
        con.close()
    if not pending:
        return []
    if destinations and erasers is None:
        erasers, _ = configured_erasers()
    jobs: list[ForgetJob] = []
    receipts: list[ForgetReceipt] = []
    for request_id, identifier in pending:
        try:
            job = ForgetJob(path, identifier or "", request_id)
        except ValueError as exc:
            _fail(path, request_id, f"invalid identifier: {exc}")
            continue
        _mark(path, request_id, "processing")
        try:
            job.erase_warehouse()
            if destinations:
                job.erase_destinations(erasers)
        except Exception as exc:  # the next run retries it; the others go on
            log.exception("deletion request %s failed; it stays pending", request_id)
            _mark(path, request_id, "pending", f"retry: {type(exc).__name__}")
            continue
        jobs.append(job)
    run_rebuild(jobs, dbt_rebuild(path) if rebuild is _DEFAULT else rebuild)  # type: ignore[arg-type]
    if jobs:
        refresh_snapshot(jobs, path)
    for job in jobs:
        job.verify()
        receipt = job.finish()
        close_request(path, job.request_id, receipt)
        receipts.append(receipt)
    return receipts


def _mark(path: Path, request_id: str, status: str, message: str | None = None) -> None:
    con = connect(path)
    try:
        con.execute(
            "update ops.deletion_requests set status = ?, message = coalesce(?, message) "
            "where request_id = ?",
            [status, message, request_id],
        )
    finally:
        con.close()


def _fail(path: Path, request_id: str, message: str) -> None:
    con = connect(path)
    try:
        con.execute(
            "update ops.deletion_requests set status = 'failed', processed_at = ?, "
            "identifier = null, message = ? where request_id = ?",
            [utcnow(), message, request_id],
        )
    finally:
        con.close()
