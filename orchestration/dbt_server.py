"""A warm dbt for ``cdp-dbt``: a local server that has imported dbt once forks a child per command.

Every dbt command line pays 3-3.5 s here before dbt does anything: the interpreter's start and dbt's
imports (mostly mashumaro generating the (de)serialisers of dbt's classes). For the +1% identity
run at 1M people that is a fifth of the command. Like the Gradle daemon or Bazel's server, the
first ``cdp-dbt`` starts a server in the background and runs its own command as usual; later ones
hand their command to the server, which forks a child that already has dbt imported. The child
becomes the command: it gets the client's standard input, output and error (the file descriptors
themselves, passed over the socket), its environment, working folder and umask, and runs the same
click command as ``dbt``. Nothing about dbt's behaviour changes; a fork gives every command a fresh
copy of the freshly imported modules, so no state passes from one command to the next.

- **Signals.** The client forwards SIGINT, SIGTERM and SIGHUP to the child (dbt cancels its queries
  on SIGINT, as Dagster's cancel expects); if the client dies, the child gets SIGINT.
- **Exit.** The client exits with the child's exit code, or dies of the child's signal.
- **Isolation.** One server per venv and dbt install: the socket's name is a fingerprint of the
  interpreter, ``PYTHONPATH``, the installed packages and the content of these two files, so after
  an upgrade or an edit a new server starts and the old one is never used again. The socket lives
  in a folder only its user can open (``CDP_DBT_SERVER_DIR``, else
  ``$XDG_RUNTIME_DIR/composable-cdp``, else ``/tmp/composable-cdp-<uid>``), and the server serves
  only its own user (``SO_PEERCRED``); a client connects only to a socket of its own user in such
  a folder.
- **Secrets.** The command's environment travels over that socket and is never written anywhere;
  the server starts with a minimal environment of its own and logs only pids, exit codes and the
  dbt sub-command.
- **Lifetime.** The server exits after ``CDP_DBT_SERVER_IDLE`` seconds without a command (600) or
  on ``python -m orchestration.dbt_server stop``. ``CDP_DBT_SERVER=0`` turns it off: every command
  then imports dbt itself. Linux only (it relies on ``fork`` and ``SCM_RIGHTS``).

This module imports only the standard library, so a client costs an interpreter start (~50 ms).
"""

from __future__ import annotations

import array
import contextlib
import errno
import hashlib
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ENV_SWITCH = "CDP_DBT_SERVER"
ENV_DIR = "CDP_DBT_SERVER_DIR"
ENV_IDLE = "CDP_DBT_SERVER_IDLE"
DEFAULT_IDLE_SECONDS = 600.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# what the server's own environment keeps of its first client's: no credentials
_SERVER_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
_HEADER = struct.Struct("!I")
_MAX_REQUEST = 64 * 1024 * 1024


def enabled() -> bool:
    return sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1").lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def server_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "composable-cdp"
    return Path("/tmp") / f"composable-cdp-{os.getuid()}"


def fingerprint() -> str:
    """Changes with the interpreter, PYTHONPATH, any package install or removal (the site-packages
    folder's mtime) and the content of the launcher and of this module."""
    parts = [os.path.realpath(sys.executable), sys.prefix, os.environ.get("PYTHONPATH", "")]
    try:
        parts.append(str(os.stat(sysconfig.get_paths()["purelib"]).st_mtime_ns))
    except OSError:
        parts.append("no site-packages")
    digest = hashlib.sha256("\0".join(parts).encode())
    for path in (Path(__file__), Path(__file__).with_name("dbt_launcher.py")):
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def socket_path() -> Path:
    return server_dir() / f"dbt-{fingerprint()}.sock"


def _private_dir(path: Path) -> Path:
    """Create ``path`` for this user only; refuse a folder someone else owns or can open."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{path} must belong to this user and be closed to others (0700)")
    return path


# ---------------------------------------------------------------------------------------- protocol


def _send_json(sock: socket.socket, payload: dict, fds: list[int] | None = None) -> None:
    body = json.dumps(payload).encode()
    data = _HEADER.pack(len(body)) + body
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = sock.sendmsg([data], ancillary)
        data = data[sent:]
    if data:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, size: int, fds: list[int]) -> bytes:
    chunks, got = [], 0
    space = socket.CMSG_SPACE(8 * array.array("i").itemsize)
    while got < size:
        data, ancillary, _flags, _addr = sock.recvmsg(size - got, space)
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(raw[: len(raw) - (len(raw) % received.itemsize)])
                fds.extend(received)
        if not data:
            raise ConnectionError("the other side closed the connection")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def _recv_json(sock: socket.socket, fds: list[int]) -> dict:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, fds))
    if size > _MAX_REQUEST:
        raise ValueError("request too large")
    return json.loads(_recv_exact(sock, size, fds))


# ------------------------------------------------------------------------------------------ client


def _trusted(path: Path) -> bool:
    """Whether ``path`` is a socket of this user's in a folder only this user can open: the
    command's environment (credentials included) goes through it."""
    try:
        folder, sock = os.stat(path.parent), os.lstat(path)
    except OSError:
        return False
    uid = os.getuid()
    return (
        folder.st_uid == uid
        and not folder.st_mode & 0o077
        and sock.st_uid == uid
        and stat.S_ISSOCK(sock.st_mode)
    )


def _connect(path: Path) -> socket.socket | None:
    if not _trusted(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _std_fds() -> list[int]:
    """The caller's fds 0-2; a closed one is replaced by /dev/null."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def run_on_server(args: list[str]) -> int | None:
    """Run ``dbt <args>`` on a running server, as this process; returns the exit code (after the
    child's signal, this process dies of it). None when no server could take the command: nothing
    ran, and the caller runs dbt itself."""
    if not enabled():
        return None
    sock = _connect(socket_path())
    if sock is None:
        return None
    request = {"argv": args, "env": dict(os.environ), "cwd": os.getcwd(), "umask": _umask()}
    reader = sock.makefile("rb")
    try:
        _send_json(sock, request, _std_fds())
        first = reader.readline().decode()
    except OSError:
        first = ""
    if not first.startswith("pid "):
        sock.close()
        return None  # refused or gone before forking: the command did not start

    def forward(signum, _frame):
        with contextlib.suppress(OSError):
            sock.sendall(f"signal {signum}\n".encode())

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        status = reader.readline().decode()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if status.startswith("exit "):
        return int(status.split()[1])
    if status.startswith("signal "):
        signum = int(status.split()[1])
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    print("cdp-dbt: the dbt server lost this command before it ended", file=sys.stderr)
    return 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def start_in_background() -> None:
    """Start a server for this venv unless one is already starting or running. Returns at once."""
    if not enabled():
        return
    try:
        folder = _private_dir(server_dir())
    except OSError:
        return
    path = socket_path()
    env = {k: v for k, v in os.environ.items() if k in _SERVER_ENV_KEEP or k == ENV_IDLE}
    with open(folder / "server.log", "ab") as log:  # noqa: PTH123 - a file handed to a child
        subprocess.Popen(
            [sys.executable, "-m", "orchestration.dbt_server", "serve", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )


def stop(path: Path | None = None, wait_seconds: float = 10.0) -> bool:
    """Ask the server at ``path`` (this venv's by default) to exit; True if one was running."""
    path = path or socket_path()
    sock = _connect(path)
    if sock is None:
        return False
    with sock:
        _send_json(sock, {"stop": True})
        with contextlib.suppress(OSError):
            sock.makefile("rb").readline()
    deadline = time.monotonic() + wait_seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


# ------------------------------------------------------------------------------------------ server


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{os.getpid()}] {message}", flush=True)


def _preload() -> None:
    """Import what every dbt command imports (and the DuckDB adapter's modules), then take them out
    of the garbage collector's work as ``cdp-dbt`` does."""
    import gc

    from orchestration.dbt_launcher import tune_gc

    tune_gc()
    import dbt.adapters.duckdb  # noqa: F401
    import dbt.cli.main  # noqa: F401
    import dbt.task.build  # noqa: F401
    import dbt_common.clients.agate_helper  # noqa: F401

    gc.freeze()


class _Server:
    def __init__(self, path: Path, idle_seconds: float, lock=None) -> None:
        self.path = path
        self.lock = lock  # the open lock file: a child closes its copy
        self.idle_seconds = idle_seconds
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.listener: socket.socket | None = None
        self.inode: int | None = None
        self.wake_r, self.wake_w = os.pipe()

    # the server's main loop ---------------------------------------------------------------------
    def serve(self) -> None:
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staging = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        staging.unlink(missing_ok=True)
        self.listener.bind(str(staging))
        os.chmod(staging, 0o600)
        self.listener.listen(64)
        self.inode = staging.stat().st_ino
        os.replace(staging, self.path)  # clients see a socket only once it accepts
        _log(f"serving {self.path.name}")
        last_activity = time.monotonic()
        try:
            while True:
                self._reap()
                if self.stopping and not self.children:
                    break
                idle_left = self.idle_seconds - (time.monotonic() - last_activity)
                if not self.children and idle_left <= 0:
                    _log("idle: exiting")
                    break
                timeout = None if self.children else max(idle_left, 0.01)
                try:
                    ready, _, _ = select.select([self.listener, self.wake_r], [], [], timeout)
                except InterruptedError:
                    continue
                if self.wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                if self.listener in ready and not self.stopping:
                    conn, _ = self.listener.accept()
                    last_activity = time.monotonic()
                    self._handle(conn)
        finally:
            self._unlink()
            _log("stopped")

    def _stop_signal(self, *_):
        self.stopping = True
        self._unlink()

    def _unlink(self) -> None:
        """Remove the socket if it is still ours (a newer server may have replaced it)."""
        with contextlib.suppress(OSError):
            if self.inode is not None and self.path.stat().st_ino == self.inode:
                self.path.unlink()
        self.inode = None

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if os.WIFSIGNALED(status):
                reply = f"signal {os.WTERMSIG(status)}"
            else:
                reply = f"exit {os.waitstatus_to_exitcode(status)}"
            _log(f"child {pid}: {reply}")
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(f"{reply}\n".encode())
                conn.close()

    def _handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.getuid():
                raise PermissionError(f"refused a command from uid {uid}")
            conn.settimeout(10)
            request = _recv_json(conn, fds)
            conn.settimeout(None)
            if request.get("stop"):
                _log("stop requested")
                self.stopping = True
                self._unlink()
                conn.sendall(b"stopping\n")
                conn.close()
                return
            if len(fds) != 3:
                raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as exc:  # a bad request must not stop the server
            _log(f"refused a request: {type(exc).__name__}: {exc}")
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()
            return
        if pid == 0:
            _run_child(self, conn, request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        argv = request.get("argv") or []
        _log(f"child {pid}: dbt {argv[0] if argv else ''}")
        self.children[pid] = conn
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)


def _run_child(server: _Server, conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the client's dbt command, then exit with its code."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if server.listener is not None:
            server.listener.close()
        for other in server.children.values():
            other.close()
        os.close(server.wake_r)
        os.close(server.wake_w)
        if server.lock is not None:
            server.lock.close()
        for target, fd in enumerate(fds):
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        _rebind_std_streams()
        _watch_client(conn)
        code = _run_dbt(list(request["argv"]))
    except BaseException:  # noqa: BLE001 - the child must always reach os._exit
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _rebind_std_streams() -> None:
    """New text streams over the client's fds 0-2, buffered as a new process would buffer them."""
    import io

    # PYTHONIOENCODING as a new interpreter reads it; else UTF-8 (the server runs in UTF-8 mode
    # or a UTF-8 locale, as CPython coerces the C locale)
    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")

    def stream(fd: int, mode: str, line_buffering: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedWriter(raw) if "w" in mode else io.BufferedReader(raw)
        return io.TextIOWrapper(
            buffered,
            encoding=encoding or "utf-8",
            errors="backslashreplace" if fd == 2 else (errors or "strict"),
            line_buffering=line_buffering,
        )

    sys.stdin = sys.__stdin__ = stream(0, "r", False)
    sys.stdout = sys.__stdout__ = stream(1, "w", os.isatty(1))
    sys.stderr = sys.__stderr__ = stream(2, "w", True)


def _watch_client(conn: socket.socket) -> None:
    """A thread that raises the client's forwarded signals in this process, and SIGINT when the
    client goes away (killed, say), so dbt cancels its queries instead of running on unseen."""
    import threading

    def watch() -> None:
        reader = conn.makefile("rb")
        while True:
            try:
                line = reader.readline().decode()
            except OSError:
                line = ""
            if not line:
                os.kill(os.getpid(), signal.SIGINT)
                return
            if line.startswith("signal "):
                os.kill(os.getpid(), int(line.split()[1]))

    threading.Thread(target=watch, name="cdp-dbt-client", daemon=True).start()


def _run_dbt(args: list[str]) -> int:
    """dbt's click command on ``args``, then the exit work a process would do (atexit handlers:
    dbt-duckdb releases its database there)."""
    import atexit
    import gc

    from dbt.cli.main import cli

    sys.argv = ["dbt", *args]
    code: int = 0
    try:
        cli.main(args=args, prog_name="dbt")
    except SystemExit as exit_:
        if exit_.code is None:
            code = 0
        elif isinstance(exit_.code, int):
            code = exit_.code
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    gc.unfreeze()
    atexit._run_exitfuncs()
    gc.collect()
    return code


def serve(path: Path, idle_seconds: float | None = None) -> int:
    """Run a server on ``path`` until it has been idle ``idle_seconds`` or is told to stop. A
    second server for the same path exits at once."""
    import fcntl

    _private_dir(path.parent)
    lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115, PTH123 - held for the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return 0  # another server has this path
        raise
    if idle_seconds is None:
        idle_seconds = float(os.environ.get(ENV_IDLE, DEFAULT_IDLE_SECONDS))
    started = time.perf_counter()
    _preload()
    _log(f"dbt imported in {time.perf_counter() - started:.1f} s")
    _Server(path, idle_seconds, lock).serve()
    import gc

    gc.unfreeze()  # as cdp-dbt does: extension modules check their objects at the exit
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "status"
    if command == "serve":
        return serve(Path(argv[1]) if len(argv) > 1 else socket_path())
    if command == "stop":
        print("stopped" if stop() else "no dbt server is running for this environment")
        return 0
    if command == "status":
        path = socket_path()
        sock = _connect(path)
        print(f"running at {path}" if sock else f"not running ({path})")
        if sock:
            sock.close()
        return 0
    print("usage: python -m orchestration.dbt_server [serve [SOCKET] | stop | status]")
    return 2


if __name__ == "__main__":
    sys.exit(main())
