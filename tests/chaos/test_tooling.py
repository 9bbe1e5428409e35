"""The chaos tooling itself: classification rules, and each proxy fault against the fake backend.

Fast (a few seconds) and needs neither the gateway nor a real backend.
"""

from __future__ import annotations

import json

import pytest
from fake_backend import FakeBackend
from load import classify_json, classify_sse, percentile, run_load
from proxy import FaultProxy

pytestmark = pytest.mark.chaos

CHUNK = json.dumps(
    {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
).encode()  # fmt: skip
ERR = b'{"error": {"message": "backend failed", "type": "api_error", "param": null, "code": null}}'


def sse(*events: bytes) -> bytes:
    return b"".join(b"data: " + e + b"\n\n" for e in events)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (sse(CHUNK, CHUNK, b"[DONE]"), "succeeded"),
        (b": ping\n\n" + sse(CHUNK, b"[DONE]"), "succeeded"),
        (sse(CHUNK, ERR), "failed_well_formed"),
        (sse(CHUNK, CHUNK), "silent_truncated"),
        (b"", "silent_truncated"),
        (sse(CHUNK, ERR, b"[DONE]"), "malformed"),
        (sse(CHUNK, b"{not json"), "malformed"),
        (sse(CHUNK, b'{"error": "a string"}'), "malformed"),
        (sse(b'{"object": "something.else", "choices": []}', b"[DONE]"), "malformed"),
        (sse(b"[DONE]"), "malformed"),
        (sse(CHUNK, b"[DONE]", CHUNK), "malformed"),
    ],
)
def test_classify_sse(body: bytes, kind: str) -> None:
    assert classify_sse(body)[0] == kind


OK = json.dumps(
    {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                  "finish_reason": "stop"}]}
).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("status", "ctype", "body", "kind"),
    [
        (200, "application/json", OK, "succeeded"),
        (503, "application/json", ERR, "failed_well_formed"),
        (429, "application/json; charset=utf-8", ERR, "failed_well_formed"),
        (200, "application/json", b'{"id": "x", "choi', "malformed"),
        (200, "application/json", b'{"choices": "none"}', "malformed"),
        (200, "text/html", OK, "malformed"),
        (500, "text/plain", b"Traceback (most recent call last):\n  ...", "malformed"),
        (502, "text/html", b"<html>Bad Gateway</html>", "malformed"),
        (404, "application/json", b'{"detail": "Not Found"}', "malformed"),
        (401, "application/json", b'{"error": "Unauthorized"}', "malformed"),
    ],
)
def test_classify_json(status: int, ctype: str, body: bytes, kind: str) -> None:
    assert classify_json(status, ctype, body)[0] == kind


def test_percentile() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


# Straight through the proxy to the fake (no gateway): what a client of a faulty backend sees.
@pytest.mark.parametrize(
    ("mode", "params", "expect"),
    [
        ("pass", {}, {"succeeded": 12}),
        ("reset", {}, {"malformed": 12}),
        ("reset", {"after_bytes": 100}, {"malformed": 12}),
        ("truncate", {"after_bytes": 150}, {"malformed": 12}),
        ("truncate_clean", {"after_bytes": 100}, {"succeeded": 6, "silent_truncated": 6}),
        ("http_error", {"status": 502}, {"failed_well_formed": 12}),
        ("http_error", {"status": 503, "body": "html"}, {"malformed": 12}),
        ("garbage", {"kind": "invalid_json"}, {"malformed": 12}),
        ("garbage", {"kind": "sse_garbage"}, {"malformed": 12}),
        ("slow_first_byte", {"delay": 2.0}, {"hung": 12}),
        ("blackhole", {"hold_max": 5}, {"hung": 12}),
        ("http_error", {"status": 500, "count": 4}, {"failed_well_formed": 4, "succeeded": 8}),
        ("reset", {"paths": ["/nowhere"]}, {"succeeded": 12}),
    ],
)
async def test_proxy_faults_as_a_client_sees_them(mode, params, expect) -> None:
    async with FakeBackend() as fb, FaultProxy(("127.0.0.1", fb.port)) as px:
        px.set_fault(mode, **params)
        res = await run_load(px.url, total=12, concurrency=12, deadline=0.5, max_duration=5)
        counts = {k: v for k, v in res.counts().items() if v}
        assert counts == expect, res.examples(("malformed", "hung", "silent_truncated"))


async def test_proxy_429_carries_retry_after_and_mirrors_keepalive() -> None:
    import httpx

    async with FakeBackend() as fb, FaultProxy(("127.0.0.1", fb.port)) as px:
        px.set_fault("http_error", status=429, retry_after=2)
        async with httpx.AsyncClient() as c:
            r = await c.post(px.url + "/v1/chat/completions", json={"messages": []})
            assert r.status_code == 429
            assert r.headers["retry-after"] == "2"
            px.set_fault("pass")
            for _ in range(3):  # keep-alive relaying: several requests on one connection
                r = await c.post(px.url + "/v1/chat/completions", json={"messages": []})
                assert r.status_code == 200
        assert px.stats.requests == 4
        assert px.stats.connections == 2


async def test_proxy_control_api() -> None:
    import httpx

    async with (
        FakeBackend() as fb,
        FaultProxy(("127.0.0.1", fb.port), control_port=0) as px,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{px.control_port}") as c,
    ):
        r = await c.post("/fault", json={"mode": "http_error", "status": 502, "count": 1})
        assert r.json()["mode"] == "http_error"
        assert (await c.post("/fault", json={"mode": "nope"})).status_code == 400
        async with httpx.AsyncClient() as client:
            first = await client.get(px.url + "/health")
            second = await client.get(px.url + "/health")
        assert (first.status_code, second.status_code) == (502, 200)
        assert (await c.get("/stats")).json()["faulted"] == {"http_error": 1}


def test_proxy_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("10.0.0.1", 80))
