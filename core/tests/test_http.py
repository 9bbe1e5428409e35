"""inference_core.http: SSE/NDJSON decoding, error mapping, Retry-After, send(), relay_sse()."""

from __future__ import annotations

import gzip
import json
import string
import time
from email.utils import formatdate

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_core.errors import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ContextLengthExceeded,
    ModelNotFound,
    RateLimited,
)
from inference_core.http import (
    create_client,
    error_for_event,
    error_for_exception,
    error_for_response,
    iter_ndjson,
    iter_sse_data,
    openai_compat,
    parse_retry_after,
    request_body,
    send,
)
from inference_core.http.transport import StaleConnection
from inference_core.models import BackendConfig, ChatChunk, ChatRequest, EmbeddingRequest, Health


async def chunks_of(*parts: bytes):
    for p in parts:
        yield p


async def sse_of(*parts: bytes) -> list[bytes]:
    return [d async for d in iter_sse_data(chunks_of(*parts))]


async def ndjson_of(*parts: bytes) -> list[bytes]:
    return [d async for d in iter_ndjson(chunks_of(*parts))]


# ------------------------------------------------------------------------------------ SSE


async def test_sse_basic_and_done():
    assert await sse_of(b'data: {"a":1}\n\ndata: [DONE]\n\n') == [b'{"a":1}', b"[DONE]"]


async def test_sse_events_split_anywhere_across_reads():
    assert await sse_of(b"da", b"ta: {", b'"a":1}\n', b"\nda", b"ta: 2\n\n") == [b'{"a":1}', b"2"]


async def test_sse_crlf_and_cr_line_ends():
    assert await sse_of(b"data: 1\r\n\r\ndata: 2\r\rdata: 3\n\n") == [b"1", b"2", b"3"]


async def test_sse_crlf_split_between_two_reads_is_one_line_end():
    assert await sse_of(b"data: x\r", b"\ndata: y\r\n\r\n") == [b"x\ny"]
    assert await sse_of(b"data: x\r\n\r", b"\ndata: y\r\n\r\n") == [b"x", b"y"]


async def test_sse_comments_and_other_fields_are_skipped():
    stream = b": ping\n\nevent: message\nid: 7\nretry: 100\ndata: x\n\n: another\n\n"
    assert await sse_of(stream) == [b"x"]


async def test_sse_multi_line_data_is_joined_with_newlines():
    assert await sse_of(b"data: a\ndata:b\ndata:  c\n\n") == [b"a\nb\n c"]


async def test_sse_trailing_event_without_blank_line_is_still_yielded():
    assert await sse_of(b"data: 1\n\ndata: [DONE]") == [b"1", b"[DONE]"]
    assert await sse_of(b"data: 1\n\ndata: 2\r") == [b"1", b"2"]


async def test_sse_empty_data_is_not_dispatched():
    assert await sse_of(b"data: \n\ndata:\n\ndata: z\n\n") == [b"z"]


async def test_sse_empty_stream():
    assert await sse_of() == []
    assert await sse_of(b"\n\n\n") == []


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(
        st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=20).map(
            str.encode
        ),
        max_size=6,
    ),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    crlf=st.booleans(),
)
def test_sse_any_chunking_gives_the_same_events(payloads, cuts, crlf):
    import asyncio

    nl = b"\r\n" if crlf else b"\n"
    stream = b"".join(b": c" + nl + nl + b"data: " + p + nl + nl for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    parts, last = [], 0
    for p in points:
        parts.append(stream[last:p])
        last = p
    parts.append(stream[last:])
    assert asyncio.run(sse_of(*parts)) == payloads


# --------------------------------------------------------------------------------- NDJSON


async def test_ndjson_lines_split_across_reads_blank_lines_and_crlf():
    out = await ndjson_of(b'{"a":', b'1}\n\n{"b":2}\r\n', b'{"done":true}')
    assert out == [b'{"a":1}', b'{"b":2}', b'{"done":true}']


async def test_ndjson_mid_stream_error_line_is_just_a_line():
    out = await ndjson_of(b'{"message":{"content":"x"}}\n{"error":"model crashed"}\n')
    assert json.loads(out[-1]) == {"error": "model crashed"}


# ---------------------------------------------------------------------------- error mapping


def err(status: int, body, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return error_for_response(status, raw, headers or {}, backend="x")


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        # vLLM: FastAPI route miss (embeddings on a chat-only server)
        (404, {"detail": "Not Found"}, CapabilityNotSupported),
        # vLLM unknown model
        (
            404,
            {
                "error": {
                    "message": "The model `x` does not exist.",
                    "type": "NotFoundError",
                    "param": "model",
                    "code": 404,
                }
            },
            ModelNotFound,
        ),
        # vLLM --api-key mismatch
        (401, {"error": "Unauthorized"}, AuthenticationFailed),
        (403, {"error": {"message": "forbidden"}}, AuthenticationFailed),
        # llama.cpp prompt over the context size
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "request (9000 tokens) exceeds the available "
                    "context size (2048 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 9000,
                    "n_ctx": 2048,
                }
            },
            ContextLengthExceeded,
        ),
        # vLLM / OpenAI context errors
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens. However,"
                    " you requested 3000 tokens",
                    "type": "BadRequestError",
                }
            },
            ContextLengthExceeded,
        ),
        (
            400,
            {
                "error": {
                    "message": "too long",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
            ContextLengthExceeded,
        ),
        # llama.cpp still loading
        (
            503,
            {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
            BackendUnavailable,
        ),
        # Ollama
        (404, {"error": "model 'llama9' not found"}, ModelNotFound),
        (400, {"error": "invalid options"}, BadRequest),
        (500, {"error": "llama runner process has terminated"}, BackendUnavailable),
        # FastAPI validation error (textgen, vLLM)
        (422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}, BadRequest),
        # a proxy in front of the backend
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", BackendUnavailable),
        (504, b"<html>Gateway Timeout</html>", BackendTimeout),
        (408, b"", BackendTimeout),
        (500, b"", BackendUnavailable),
        (
            501,
            {"error": {"message": "This server does not support embeddings."}},
            CapabilityNotSupported,
        ),
        (429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, RateLimited),
    ],
)
def test_error_mapping_for_each_status_and_body_shape(status, body, cls):
    e = err(status, body)
    assert type(e) is cls
    assert e.backend == "x"
    assert e.message


def test_vllm_max_tokens_over_max_model_len_is_a_context_length_error():
    """vLLM's 400 when max_tokens does not fit: this backend's context is too small, so a
    larger-context backend may serve it (the router falls back)."""
    body = {
        "error": {
            "message": "max_tokens=100000 cannot be greater than max_model_len=512. Please "
            "request fewer output tokens. (parameter=max_tokens, value=100000)",
            "type": "BadRequestError",
            "param": "max_tokens",
            "code": 400,
        }
    }
    e = err(400, body)
    assert type(e) is ContextLengthExceeded
    assert e.fallback
    assert not e.retryable
    assert e.param == "max_tokens"
    assert "max_model_len=512" in e.message


def test_error_mapping_keeps_the_backends_text_and_the_status():
    e = err(422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]})
    assert e.status == 422
    assert "field required" in e.message
    html = err(502, b"<html>Bad Gateway</html>")
    assert "not an error object" in html.message
    assert "502" in html.message


def test_error_mapping_never_includes_headers():
    e = err(401, {"error": "Unauthorized"}, {"authorization": "Bearer sk-secret-123"})
    assert "sk-secret-123" not in repr(e) + str(e.to_openai())


def test_long_backend_messages_are_shortened():
    e = err(400, {"error": {"message": "x " * 1000}})
    assert len(e.message) <= 300


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "nope", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    now = time.time()
    value = parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now)
    assert 29 <= value <= 31
    past = parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now)
    assert past == 0.0


def test_rate_limited_carries_retry_after_from_headers():
    e = err(429, {"error": "busy"}, httpx.Headers({"Retry-After-Ms": "1200"}))
    assert isinstance(e, RateLimited)
    assert e.retry_after == 1.2


@pytest.mark.parametrize(
    ("exc", "cls", "text"),
    [
        (httpx.ConnectTimeout("t"), BackendTimeout, "connecting"),
        (httpx.ReadTimeout("t"), BackendTimeout, "waiting for data"),
        (httpx.PoolTimeout("t"), BackendTimeout, "free connection"),
        (httpx.ConnectError("[Errno 111] Connection refused"), BackendUnavailable, "refused"),
        (httpx.RemoteProtocolError("peer closed"), BackendUnavailable, "connection broken"),
        (httpx.ReadError("reset"), BackendUnavailable, "transport error"),
        (ConnectionResetError("reset"), BackendUnavailable, "transport error"),
        (RuntimeError("x"), BackendUnavailable, "unexpected RuntimeError"),
    ],
)
def test_error_for_exception(exc, cls, text):
    e = error_for_exception(exc, backend="x")
    assert type(e) is cls
    assert text in e.message


def test_error_for_event_in_band_errors():
    e = error_for_event({"message": "engine died", "code": 503}, backend="x")
    assert isinstance(e, BackendUnavailable)
    assert "error in the stream: engine died" in e.message
    assert isinstance(error_for_event({"message": "slow", "code": 429}, backend="x"), RateLimited)
    assert isinstance(error_for_event("model crashed", backend="x"), BackendUnavailable)
    ctx = error_for_event(
        {"message": "exceeds context", "type": "exceed_context_size_error", "code": 400},
        backend="x",
    )
    assert isinstance(ctx, ContextLengthExceeded)


# ------------------------------------------------------------------------- send / relay


def client(handler) -> httpx.AsyncClient:
    return create_client(transport=httpx.MockTransport(handler))


async def test_send_resends_once_on_a_stale_pooled_connection():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise StaleConnection("Server disconnected without sending a response.")
        return httpx.Response(200, json={"ok": True})

    async with client(handler) as http:
        response = await send(http, "POST", "http://h/x", backend="x", body={"a": 1})
    assert response.json() == {"ok": True}
    assert len(calls) == 2
    assert calls[1].content == b'{"a":1}'


async def test_send_does_not_resend_twice_nor_other_protocol_errors():
    calls = []

    def stale(request):
        calls.append(1)
        raise StaleConnection("Server disconnected without sending a response.")

    async with client(stale) as http:
        with pytest.raises(BackendUnavailable, match="connection broken"):
            await send(http, "GET", "http://h/x", backend="x")
    assert len(calls) == 2

    calls.clear()

    def unknown(request):  # httpcore's words, but nobody says the connection was reused
        calls.append(1)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    async with client(unknown) as http:
        with pytest.raises(BackendUnavailable):
            await send(http, "POST", "http://h/x", backend="x", body={"a": 1})
    assert len(calls) == 1

    calls.clear()

    def broken(request):
        calls.append(1)
        raise httpx.RemoteProtocolError("illegal header")

    async with client(broken) as http:
        with pytest.raises(BackendUnavailable):
            await send(http, "GET", "http://h/x", backend="x")
    assert len(calls) == 1


async def test_send_maps_error_statuses_and_closes_the_response():
    def handler(request):
        return httpx.Response(401, json={"error": "Unauthorized"})

    async with client(handler) as http:
        with pytest.raises(AuthenticationFailed, match="Unauthorized"):
            await send(http, "POST", "http://h/x", backend="x", body={}, stream=True)


async def test_send_applies_a_per_request_timeout():
    seen = {}

    def handler(request):
        seen.update(request.extensions["timeout"])
        return httpx.Response(200)

    async with client(handler) as http:
        await send(http, "GET", "http://h/x", backend="x", timeout=httpx.Timeout(9, connect=2))
    assert seen["connect"] == 2
    assert seen["read"] == 9


def test_create_client_defaults():
    http = create_client(connect_timeout=3)
    assert http.timeout.connect == 3
    assert http.timeout.read == 600
    assert http.headers["user-agent"].startswith("inference-core/")
    assert http.follow_redirects is False


def test_request_body_maps_the_model_and_keeps_extras_without_mutating():
    request = ChatRequest(model="alias", messages=[{"role": "user", "content": "x"}], top_k=5)
    cfg = BackendConfig(
        name="v", model="real", aliases={"alias": "aliased"}, base_urls=("http://h",)
    )
    body = request_body(request, cfg)
    assert body["model"] == "aliased"
    assert body["top_k"] == 5
    assert "temperature" not in body
    assert request.model == "alias"


@pytest.mark.parametrize(
    ("asked", "sent"),
    [("default", "real"), ("other-model", "other-model"), ("alias", "aliased")],
)
def test_model_for_the_configured_model_is_a_default_not_an_override(asked, sent):
    cfg = BackendConfig(name="v", model="real", aliases={"alias": "aliased"})
    assert cfg.model_for(asked) == sent
    assert BackendConfig(name="v").model_for("default") == "default"


def _chunk(i: int) -> bytes:
    c = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": str(i)}}],
    }
    return b"data: " + json.dumps(c).encode() + b"\n\n"


async def test_relay_sse_decodes_a_gzip_encoded_stream():
    body = gzip.compress(_chunk(1) + _chunk(2) + b"data: [DONE]\n\n")

    def handler(request):
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
            stream=httpx.ByteStream(body),
        )

    request = ChatRequest(messages=[{"role": "user", "content": "x"}], stream=True)
    cfg = BackendConfig(name="v", base_urls=("http://h",))
    async with client(handler) as http:
        stream = await openai_compat.chat(http, cfg, request)
        chunks = [c async for c in stream]
    assert [c.choices[0].delta.content for c in chunks] == ["1", "2"]
    assert all(isinstance(c, ChatChunk) and c.raw for c in chunks)


async def test_relay_sse_in_band_error_and_truncation():
    def make(body):
        def handler(request):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

        return handler

    request = ChatRequest(messages=[{"role": "user", "content": "x"}], stream=True)
    cfg = BackendConfig(name="v", base_urls=("http://h",))
    error_event = b'data: {"error": {"message": "oops", "code": 500}}\n\n'
    async with client(make(_chunk(1) + error_event)) as http:
        stream = await openai_compat.chat(http, cfg, request)
        assert (await stream.__anext__()).choices[0].delta.content == "1"
        with pytest.raises(BackendUnavailable, match="oops"):
            await stream.__anext__()
    async with client(make(_chunk(1))) as http:
        stream = await openai_compat.chat(http, cfg, request)
        await stream.__anext__()
        with pytest.raises(BackendUnavailable, match="DONE"):
            await stream.__anext__()


async def test_malformed_json_answer_is_unavailable():
    def handler(request):
        return httpx.Response(200, content=b"<html>hello</html>")

    request = ChatRequest(messages=[{"role": "user", "content": "x"}])
    cfg = BackendConfig(name="v", base_urls=("http://h",))
    async with client(handler) as http:
        with pytest.raises(BackendUnavailable, match="malformed ChatResponse"):
            await openai_compat.chat(http, cfg, request)


async def test_probe_health_states():
    replies = iter(
        [
            httpx.Response(200, json={"status": "ok"}),
            httpx.Response(503, json={"error": {"code": 503, "message": "Loading model"}}),
            httpx.ConnectError("refused"),
        ]
    )

    def handler(request):
        r = next(replies)
        if isinstance(r, Exception):
            raise r
        return r

    def classify(response):
        if response.status_code == 503 and b"Loading model" in response.content:
            return Health(state="loading", detail="Loading model")
        return None

    cfg = BackendConfig(name="l", base_urls=("http://h",))
    async with client(handler) as http:
        ok = await openai_compat.probe_health(http, cfg, classify=classify)
        loading = await openai_compat.probe_health(http, cfg, classify=classify)
        down = await openai_compat.probe_health(http, cfg, classify=classify)
    assert ok.state == "ready"
    assert ok.latency_ms is not None
    assert loading.state == "loading"
    assert down.state == "down"
    assert "refused" in down.detail
    no_url = await openai_compat.probe_health(client(handler), BackendConfig(name="z"))
    assert no_url.state == "down"


async def test_openai_compat_applies_the_backends_connect_and_read_timeouts():
    seen = []

    def handler(request):
        seen.append(request.extensions["timeout"])
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return httpx.Response(
            200, json={"object": "list", "model": "e", "data": [{"index": 0, "embedding": [1.0]}]}
        )

    cfg = BackendConfig(name="v", base_urls=("http://h",), timeout=7, connect_timeout=1.5)
    async with client(handler) as http:
        await openai_compat.embed(http, cfg, EmbeddingRequest(input="x"))
        await openai_compat.list_models(http, cfg)
    assert [(t["connect"], t["read"], t["pool"]) for t in seen] == [(1.5, 7, 1.5)] * 2
    assert openai_compat.config_timeout(cfg) is openai_compat.config_timeout(cfg)


# ------------------------------------------------------------- upstream size caps (#11, item 4)


async def test_an_endless_sse_event_or_ndjson_line_is_cut_off():
    from inference_core.http.streams import StreamTooLarge

    async def endless(unit: bytes):
        for _ in range(1000):
            yield unit

    with pytest.raises(StreamTooLarge, match="SSE event"):
        async for _ in iter_sse_data(endless(b"data: " + b"x" * 1000), max_bytes=64 * 1024):
            pass
    with pytest.raises(StreamTooLarge, match="NDJSON line"):
        async for _ in iter_ndjson(endless(b"y" * 1000), max_bytes=64 * 1024):
            pass

    async def fine():
        for i in range(1000):
            yield b"data: %d\n\n" % i

    got = [d async for d in iter_sse_data(fine(), max_bytes=64)]  # many small events: fine
    assert len(got) == 1000


async def test_a_huge_answer_body_is_refused_and_error_bodies_are_cut(monkeypatch):
    from inference_core.http import openai_compat as oc

    big = b"z" * 50_000

    def handler(request):
        if request.url.path == "/big":
            return httpx.Response(200, content=big)
        if request.url.path == "/big-chunked":

            async def parts():
                yield big[:25_000]
                yield big[25_000:]

            return httpx.Response(200, content=parts())
        return httpx.Response(500, content=b'{"error":{"message":"' + big + b'"}}')

    monkeypatch.setattr(oc, "MAX_BODY_BYTES", 10_000)
    monkeypatch.setattr(oc, "MAX_ERROR_BODY_BYTES", 1_000)
    async with client(handler) as http:
        for path in ("/big", "/big-chunked"):
            with pytest.raises(BackendUnavailable, match="limit"):
                await send(http, "POST", f"http://h{path}", backend="x", body={})
        with pytest.raises(BackendUnavailable):  # the 500, mapped from its first 1000 bytes
            await send(http, "POST", "http://h/err", backend="x", body={})
    monkeypatch.setattr(oc, "MAX_BODY_BYTES", 100_000)
    async with client(handler) as http:
        r = await send(http, "POST", "http://h/big", backend="x", body={})
        assert r.content == big
