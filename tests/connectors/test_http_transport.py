"""The one HTTP transport, as the syncs and deletions use it, against a real local server."""

from __future__ import annotations

import email.utils
import threading
import time

import pytest

from connectors.http import HttpClient, Transport
from orchestration.demo.fakes.base import FakeServer, Request, Response, route
from reverse_etl.http import Client, HttpError, account_key, limiter_for

SECRET = "sk-sync-secret-7"


class Scripted(FakeServer):
    """Answers each request with the next scripted (status, headers), then 200."""

    name = "scripted"

    def __init__(self, script: list[tuple[int, dict[str, str]]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.script = list(script)
        self.seen: list[float] = []

    @route("POST", r"/(?P<what>.+)")
    def anything(self, request: Request) -> Response:
        with self._lock:
            self.seen.append(time.monotonic())
            status, headers = self.script.pop(0) if self.script else (200, {})
        return Response(status, {"message": f"said {request.headers.get('x-key')}"}, headers)


def test_sources_syncs_and_deletions_share_one_transport():
    assert issubclass(HttpClient, Transport) and issubclass(Client, Transport)
    # the deletion clients are the syncs' clients
    from orchestration.privacy import destinations

    assert destinations.http.Client is Client


def test_a_sync_honours_an_http_date_retry_after_on_a_server_error():
    later = email.utils.formatdate(time.time() + 2, usegmt=True)
    with Scripted([(503, {"Retry-After": later})]) as fake:
        client = Client(fake.url, backoff=0.001)
        started = time.monotonic()
        assert client.request("POST", "/batch", json={}).status_code == 200
        assert time.monotonic() - started >= 0.9  # the date, not the 1 ms backoff
        assert (client.calls, client.retries) == (2, 1)


def test_a_429_pauses_every_client_of_the_account():
    key = account_key("acme", "http://acme.invalid", SECRET)
    limiter = limiter_for(key, (100, 1.0))
    with Scripted([(429, {"Retry-After": "0.6"})]) as fake:
        first = Client(fake.url, limiter=limiter)
        second = Client(fake.url, limiter=limiter_for(key, (100, 1.0)))
        done: dict[str, float] = {}

        def send_later() -> None:
            time.sleep(0.15)  # after the first client's 429 paused the account
            second.request("POST", "/other", json={})
            done["second"] = time.monotonic()

        thread = threading.Thread(target=send_later)
        started = time.monotonic()
        thread.start()
        first.request("POST", "/batch", json={})
        thread.join()
        assert done["second"] - started >= 0.55  # the other sync waited out the pause too
        assert first.retries == 1 and second.retries == 0


def test_retries_run_out_with_the_last_answer_and_no_extra_wait():
    with Scripted([(502, {})] * 3) as fake:
        client = Client(fake.url, max_attempts=3, backoff=0.2, max_backoff=0.2)
        started = time.monotonic()
        with pytest.raises(HttpError) as info:
            client.request("POST", "/batch", json={}, headers={"X-Key": SECRET})
        # two waits of 0.1-0.2 s between three attempts; none after the last
        assert time.monotonic() - started < 1.0
        assert info.value.status == 502 and info.value.retries == 2
        assert (client.calls, client.retries) == (3, 2)


def test_transport_errors_mask_known_secrets():
    with Scripted([(400, {})]) as fake:
        transport = Transport(fake.url, secrets=(SECRET,))
        with pytest.raises(HttpError) as info:
            transport.send("POST", "/x", json={}, headers={"X-Key": SECRET})
        assert SECRET not in str(info.value) and SECRET not in info.value.text
        assert "said ***" in info.value.message
