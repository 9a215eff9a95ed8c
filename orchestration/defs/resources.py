"""Resources: the DuckDB warehouse (one writer at a time, across processes) and the dbt CLI.

DuckDB lets one process write a file; a second writer fails with "Could not set lock on file".
Dagster's pools serialize steps the daemon launches, but ``cdp run`` executes in process, the UI
may launch a run at the same moment, and a test may start two runs together. So every step that
writes takes an exclusive ``flock`` on ``<warehouse>.lock`` first and readers take a shared one:
overlapping runs wait for each other instead of failing, and a crashed process frees its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource

from orchestration import settings
from orchestration.dbt_cli import dbt_executable

log = logging.getLogger(__name__)

LOCK_WAIT_S = float(os.environ.get("CDP_WRITER_LOCK_TIMEOUT_S", "3600"))


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


@contextlib.contextmanager
def file_lock(path: Path, exclusive: bool, timeout_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold an advisory lock on ``path``; waits (logging once) while another holder has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("waiting for the warehouse lock %s (another run writes)", path)
                    waited = True
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"gave up after {timeout_s:.0f}s waiting for the warehouse lock {path}"
                    ) from None
                time.sleep(0.1)
        kind = "exclusive" if exclusive else "shared"
        # at debug level, when the lock was held (wall clock, so two processes can be compared)
        log.debug("warehouse lock %s %s acquired at %.6f", path, kind, time.time())
        try:
            yield
        finally:
            log.debug("warehouse lock %s %s released at %.6f", path, kind, time.time())
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_only_connection(db_path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection under a fixed catalog name (see ``connectors.loader.connect``):
    in a file named ``cdp.duckdb`` a bare ``cdp.<table>`` would be ambiguous."""
    from connectors.loader import connect

    return connect(db_path, read_only=True)


class WarehouseResource(ConfigurableResource):
    """The DuckDB file; ``path`` empty means ``CDP_DUCKDB_PATH`` (read when the step runs)."""

    path: str = ""

    def db_path(self) -> Path:
        return Path(self.path).resolve() if self.path else settings.duckdb_path()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        """Exclusive use of the file for a writing step (connectors, dbt, syncs)."""
        db_path = self.db_path()
        with file_lock(lock_path(db_path), exclusive=True):
            yield db_path

    @contextlib.contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; shares the lock with other readers, waits for a writer."""
        db_path = self.db_path()
        if not db_path.exists():
            raise FileNotFoundError(f"the warehouse {db_path} does not exist yet: run `cdp run`")
        with file_lock(lock_path(db_path), exclusive=False):
            con = read_only_connection(db_path)
            try:
                yield con
            finally:
                con.close()


def dbt_target() -> str:
    return os.environ.get("CDP_DBT_TARGET", "dev")


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(settings.dbt_project_dir()),
        profiles_dir=str(settings.dbt_profiles_dir()),
        target=dbt_target(),
        dbt_executable=dbt_executable(),
    )
