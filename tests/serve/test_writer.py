"""The durable event log: rotation protocol, crash recovery, dedup, one writer per folder."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import pytest

from orchestration.serve.spec import (
    MAX_BATCH_BYTES,
    PayloadError,
    decode_body,
    prepare,
    problem,
)
from orchestration.serve.writer import (
    CLOSED_SUFFIX,
    OPEN_SUFFIX,
    CollectorLocked,
    EventLog,
    read_events,
)


def _events(prefix: str, n: int) -> list[dict]:
    return [
        {"type": "track", "event": "E", "userId": "u", "messageId": f"{prefix}{i}"}
        for i in range(n)
    ]


def test_open_file_is_invisible_until_rotation(tmp_path: Path) -> None:
    with EventLog(tmp_path, rotate_seconds=3600) as log:
        log.submit(_events("a", 3)).result()
        assert list(tmp_path.glob(f"*{OPEN_SUFFIX}"))
        assert not list(tmp_path.glob(f"*{CLOSED_SUFFIX}"))  # the connector sees nothing yet
        log.rotate()
        assert not list(tmp_path.glob(f"*{OPEN_SUFFIX}"))
        log.submit(_events("b", 2)).result()
    files = sorted(tmp_path.glob(f"*{CLOSED_SUFFIX}"))
    assert len(files) == 2  # close() published the second file
    assert [e["messageId"] for e in read_events(tmp_path)] == ["a0", "a1", "a2", "b0", "b1"]


def test_rotation_by_size_and_by_age(tmp_path: Path) -> None:
    with EventLog(tmp_path / "size", rotate_bytes=500, rotate_seconds=3600) as log:
        for i in range(10):
            log.submit(_events(f"s{i}-", 3)).result()
        # every commit after the file passed 500 bytes closed it
        assert log.files_closed >= 3
    assert len(read_events(tmp_path / "size")) == 30

    with EventLog(tmp_path / "age", rotate_seconds=0.2) as log:
        log.submit(_events("t", 1)).result()
        deadline = time.monotonic() + 5
        while not list((tmp_path / "age").glob(f"*{CLOSED_SUFFIX}")):
            assert time.monotonic() < deadline, "an idle open file was not published"
            time.sleep(0.05)
        assert log.current_path is None


def test_recovery_drops_only_a_torn_last_line(tmp_path: Path) -> None:
    whole = b"".join(json.dumps(e).encode() + b"\n" for e in _events("w", 3))
    (tmp_path / f"events-1{OPEN_SUFFIX}").write_bytes(whole + b'{"type":"track","mess')
    last = json.dumps(_events("n", 1)[0]).encode()  # complete, only the newline missing
    (tmp_path / f"events-2{OPEN_SUFFIX}").write_bytes(whole.replace(b'"w', b'"x') + last)
    (tmp_path / f"events-3{OPEN_SUFFIX}").write_bytes(b'{"torn')
    with EventLog(tmp_path):
        pass
    assert not list(tmp_path.glob(f"*{OPEN_SUFFIX}"))
    ids = [e["messageId"] for e in read_events(tmp_path)]
    assert ids == ["w0", "w1", "w2", "x0", "x1", "x2", "n0"]


def test_one_collector_per_folder(tmp_path: Path) -> None:
    with EventLog(tmp_path), pytest.raises(CollectorLocked):
        EventLog(tmp_path).start()


def test_concurrent_submissions_are_group_committed(tmp_path: Path) -> None:
    n_threads, per_thread = 8, 50
    with EventLog(tmp_path) as log:
        results = []

        def work(t: int) -> None:
            for i in range(per_thread):
                results.append(log.submit(_events(f"t{t}-{i}-", 5)).result())

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sum(len(r.stored) for r in results) == n_threads * per_thread * 5
    # requests that arrived during an fsync shared the next one
    assert log.commits < 0.9 * n_threads * per_thread
    stored = [e["messageId"] for e in read_events(tmp_path)]
    assert len(stored) == len(set(stored)) == n_threads * per_thread * 5


def test_body_limits_and_gzip() -> None:
    body = json.dumps({"batch": _events("g", 3)}).encode()
    assert decode_body(gzip.compress(body), "gzip") == body
    with pytest.raises(PayloadError) as bomb:
        decode_body(gzip.compress(b" " * (MAX_BATCH_BYTES * 3)), "gzip")
    assert bomb.value.code == "payload_too_large"
    with pytest.raises(PayloadError) as broken:
        decode_body(b"not gzip", "gzip")
    assert broken.value.code == "invalid_gzip"
    with pytest.raises(PayloadError):
        decode_body(body, "br")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "track", "userId": "u"}, "track needs an event name"),
        ({"type": "page"}, "userId or anonymousId is required"),
        ({"type": "alias", "userId": "u"}, "alias needs userId and previousId"),
        ({"type": "group", "userId": "u"}, "group needs a groupId"),
        ({"type": "boom", "userId": "u"}, "unknown type"),
        ({"type": "track", "event": "E", "userId": "u", "properties": [1]}, "must be an object"),
        ({"type": "identify", "anonymousId": "a"}, None),
    ],
)
def test_message_validation(message: dict, reason: str | None) -> None:
    found = problem(message)
    assert (found is None) if reason is None else (reason in found)


def test_batch_fields_apply_to_every_message_and_secrets_are_dropped() -> None:
    prepared = prepare(
        {
            "batch": [
                {"type": "track", "event": "E", "userId": "u", "context": {"app": "x"}},
                {"type": "page", "userId": "u", "writeKey": "secret"},
            ],
            "context": {"ip": "1.2.3.4", "app": "batch"},
            "writeKey": "secret",
        },
        None,
    )
    assert [e["context"] for e in prepared.events] == [
        {"ip": "1.2.3.4", "app": "x"},
        {"ip": "1.2.3.4", "app": "batch"},
    ]
    assert all("writeKey" not in e for e in prepared.events)
    assert "secret" not in json.dumps(prepared.events)
