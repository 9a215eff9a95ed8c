"""The shared HTTP client against a real local server: retries, Retry-After, limits, messages."""

from __future__ import annotations

import email.utils
import socket
import time

import pytest

from connectors.base import ConnectorError
from connectors.http import HttpClient, RateLimiter, retry_after_seconds
from orchestration.demo.fakes.base import FakeServer, Request, Response, route

SECRET = "tok-very-secret-42"


class Flaky(FakeServer):
    """Answers each path's first ``fail[path]`` requests with the configured error."""

    name = "flaky"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail: dict[str, tuple[int, dict[str, str]]] = {}
        self.left: dict[str, int] = {}

    @route("GET", r"/(?P<what>.+)")
    def anything(self, request: Request) -> Response:
        path = request.path
        if self.left.get(path, 0) > 0:
            self.left[path] -= 1
            status, headers = self.fail[path]
            return Response(
                status, {"error": f"echo {request.headers.get('authorization')}"}, headers
            )
        return Response(200, {"ok": path})


def client(url: str, **kwargs) -> HttpClient:
    return HttpClient(
        "acme",
        url,
        credential_vars=("ACME_TOKEN",),
        headers={"Authorization": f"Bearer {SECRET}"},
        secrets=(SECRET,),
        backoff_base_s=0.01,
        **kwargs,
    )


def test_retry_after_is_honoured_and_counted():
    with Flaky() as fake:
        fake.fail["/slow"] = (429, {"Retry-After": "0.4"})
        fake.left["/slow"] = 2
        c = client(fake.url)
        started = time.monotonic()
        assert c.get_json("/slow") == {"ok": "/slow"}
        assert time.monotonic() - started >= 0.8
        assert (c.retries, c.requests) == (2, 3)


def test_http_date_retry_after():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(later) <= 31
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_then_given_up_without_secrets(status):
    with Flaky() as fake:
        fake.fail["/x"] = (status, {})
        fake.left["/x"] = 99
        c = client(fake.url, max_retries=3)
        with pytest.raises(ConnectorError) as info:
            c.get_json("/x", {"q": SECRET})
        message = str(info.value)
        assert f"HTTP {status}, giving up after 3 retries" in message
        assert SECRET not in message and not info.value.source_wide
        assert c.retries == 3


@pytest.mark.parametrize(
    ("status", "needle"),
    [(401, "check ACME_TOKEN"), (403, "check ACME_TOKEN"), (404, "ACME_BASE_URL")],
)
def test_auth_and_missing_endpoints_fail_the_source_at_once(status, needle):
    with Flaky() as fake:
        fake.fail["/y"] = (status, {})
        fake.left["/y"] = 99
        c = client(fake.url)
        with pytest.raises(ConnectorError) as info:
            c.get_json("/y")
        assert needle in str(info.value) and info.value.source_wide
        assert c.requests == 1


def test_other_client_errors_show_the_body_with_secrets_masked():
    with Flaky() as fake:
        fake.fail["/z"] = (400, {})
        fake.left["/z"] = 1
        with pytest.raises(ConnectorError) as info:
            client(fake.url).get_json("/z")
        assert "HTTP 400" in str(info.value) and "Bearer ***" in str(info.value)
        assert SECRET not in str(info.value)


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    c = client(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(ConnectorError, match="ConnectionError, giving up after 2 retries"):
        c.get_json("/")
    assert c.retries == 2


def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(20.0)
    started = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - started >= 0.24
    unlimited = RateLimiter(None)
    started = time.monotonic()
    for _ in range(100):
        unlimited.wait()
    assert time.monotonic() - started < 0.05


def test_loopback_urls_get_no_client_side_limit_unless_configured(monkeypatch):
    from connectors.http import default_rate_limit

    monkeypatch.delenv("ACME_RATE_LIMIT_PER_S", raising=False)
    assert default_rate_limit("acme", "http://127.0.0.1:9999", 5.0) is None
    assert default_rate_limit("acme", "https://api.acme.example", 5.0) == 5.0
    monkeypatch.setenv("ACME_RATE_LIMIT_PER_S", "2.5")
    assert default_rate_limit("acme", "http://127.0.0.1:9999", 5.0) == 2.5


def test_json_pages_vouch_for_objects_only_when_all_are_objects():
    from connectors.http import json_page

    page = json_page([{"id": 1, "name": "é"}, {"id": 2}], {"c": 1})
    assert page.records == ['{"id":1,"name":"é"}', '{"id":2}'] and page.objects
    assert not json_page([{"id": 1}, "stray string"], None).objects
