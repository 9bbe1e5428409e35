"""inference-openai against the fake OpenAI server, in both client modes (raw relay and SDK)."""

from __future__ import annotations

import base64
import struct

import httpx
import pytest

import inference_openai
from inference_core import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ChatRequest,
    CompletionRequest,
    ContextLengthExceeded,
    EmbeddingRequest,
    InferenceError,
    ModelNotFound,
    RateLimited,
)
from inference_core.http.transport import StaleConnection
from inference_core.testing import make_config
from tests.fakes import fake_vector

plugin = inference_openai.plugin
MESSAGES = [{"role": "user", "content": "Say hello"}]


def chat_request(**kw) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "default"), messages=MESSAGES, **kw)


async def drain(stream) -> list:
    return [item async for item in stream]


# ---------------------------------------------------------------------------------- chat


async def test_chat_maps_model_and_returns_usage(server, config, http, client_kind):
    result = await plugin.chat(request=chat_request(), config=config(), http=http)
    assert result.choices[0].message.content == "Hello from the fake server."
    assert result.choices[0].finish_reason == "stop"
    assert result.model == "gpt-4o-mini"
    assert result.usage.completion_tokens == 5
    sent = server.last("/v1/chat/completions")
    assert sent.json["model"] == "gpt-4o-mini"  # the alias never leaves
    assert sent.headers["authorization"] == "Bearer sk-test-0123456789abcdef"
    if client_kind == "raw":  # bytes kept for a verbatim relay
        assert result.raw is not None
        assert b'"chatcmpl-fake' in result.raw


async def test_unknown_fields_pass_through(server, config, http):
    request = chat_request(top_k=5, min_p=0.1, custom={"a": 1}, temperature=0.2, seed=7)
    await plugin.chat(request=request, config=config(), http=http)
    sent = server.last("/v1/chat/completions").json
    assert sent["top_k"] == 5
    assert sent["min_p"] == 0.1
    assert sent["custom"] == {"a": 1}
    assert sent["temperature"] == 0.2
    assert sent["seed"] == 7


async def test_organization_and_project_headers(server, config, http):
    cfg = config(options={"organization": "org-123", "project": "proj_456"})
    await plugin.chat(request=chat_request(), config=cfg, http=http)
    headers = server.last("/v1/chat/completions").headers
    assert headers["openai-organization"] == "org-123"
    assert headers["openai-project"] == "proj_456"


async def test_no_organization_header_by_default(server, config, http, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-env")  # settings' job, not the plugin's
    await plugin.chat(request=chat_request(), config=config(), http=http)
    assert "openai-organization" not in server.last("/v1/chat/completions").headers


async def test_tool_call_round_trip(server, config, http):
    server.behaviour = "tool_call"
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    result = await plugin.chat(request=chat_request(tools=tools), config=config(), http=http)
    call = result.choices[0].message.tool_calls[0]
    assert call["function"]["name"] == "get_weather"
    assert result.choices[0].finish_reason == "tool_calls"
    assert server.last().json["tools"] == tools


# ------------------------------------------------------------------------------- streaming


async def test_stream_with_usage(server, config, http):
    request = chat_request(stream=True, stream_options={"include_usage": True})
    chunks = await drain(await plugin.chat(request=request, config=config(), http=http))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake server."
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens > 0
    assert server.last().json["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_is_the_clients_choice(server, config, http):
    chunks = await drain(
        await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "stream_options" not in server.last().json


async def test_stream_raw_chunks_keep_bytes(server, config, http):
    cfg = config(options={"client": "raw"})  # only the raw relay keeps upstream bytes
    chunks = await drain(
        await plugin.chat(request=chat_request(stream=True), config=cfg, http=http)
    )
    assert all(c.raw and c.raw.startswith(b'{"id":"chatcmpl-fake') for c in chunks)


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [("midstream_error", BackendUnavailable), ("truncated", BackendUnavailable)],
)
async def test_stream_failures_after_first_chunk_raise(server, config, http, behaviour, error):
    server.behaviour = behaviour
    stream = await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    first = await stream.__anext__()
    with pytest.raises(error):
        await drain(stream)
    assert first.choices  # the failure came after the first chunk: in-band, not a silent end


async def test_stream_reset_raises_taxonomy_error(server, config, http):
    server.behaviour = "reset"
    with pytest.raises(BackendUnavailable):
        await drain(
            await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
        )


async def test_stream_refusal_raised_before_first_chunk(server, config, http):
    server.behaviour = "429"
    with pytest.raises(RateLimited):  # raised by the hook itself: the router can fall back
        await plugin.chat(request=chat_request(stream=True), config=config(), http=http)


async def test_stream_closed_early_releases_connection(server, config, http):
    server.chunk_delay = 0.05
    stream = await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    await stream.aclose()
    # the pool is usable again at once
    result = await plugin.chat(request=chat_request(), config=config(), http=http)
    assert result.choices


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("400", BadRequest),
        ("401", AuthenticationFailed),
        ("403", AuthenticationFailed),
        ("404", ModelNotFound),
        ("context_length", ContextLengthExceeded),
        ("429", RateLimited),
        ("500", BackendUnavailable),
        ("503", BackendUnavailable),
        ("reset", BackendUnavailable),
        ("garbage", BackendUnavailable),
        ("truncated", BackendUnavailable),
    ],
)
async def test_error_mapping(server, config, http, behaviour, error):
    server.behaviour = behaviour
    with pytest.raises(error) as info:
        await plugin.chat(request=chat_request(), config=config(), http=http)
    assert type(info.value) is error or behaviour not in ("400",)
    assert info.value.backend == "openai"
    if behaviour == "429":
        assert info.value.retry_after == 1.0
    if behaviour == "context_length":
        assert info.value.fallback  # a larger-context backend may serve it
    assert "sk-test" not in str(info.value)


async def test_timeout(server, config, http):
    server.behaviour = "slow"
    server.delay = 1.0
    with pytest.raises(BackendTimeout):
        await plugin.chat(request=chat_request(), config=config(timeout=0.2), http=http)


async def test_connection_refused(config, http):
    cfg = config(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(BackendUnavailable):
        await plugin.chat(request=chat_request(), config=cfg, http=http)


async def test_insufficient_quota_is_not_a_retryable_rate_limit(client_kind):
    body = {
        "error": {
            "message": "You exceeded your current quota, please check your plan.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    transport = httpx.MockTransport(lambda r: httpx.Response(429, json=body))
    async with httpx.AsyncClient(transport=transport) as http:
        cfg = make_config(
            "openai", base_url="http://x.test/v1", api_key="k", options={"client": client_kind}
        )
        with pytest.raises(AuthenticationFailed, match="quota"):
            await plugin.chat(request=chat_request(), config=cfg, http=http)


async def test_missing_key_for_official_api_fails_without_a_request(client_kind):
    calls = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as http:
        cfg = make_config("openai", base_url="https://api.openai.com/v1", api_key=None)
        with pytest.raises(AuthenticationFailed, match="OPENAI_API_KEY"):
            await plugin.chat(request=chat_request(), config=cfg, http=http)
        health = await plugin.health(config=cfg, http=http)
    assert health.state == "down"
    assert "OPENAI_API_KEY" in health.detail
    assert calls == []


async def test_no_key_is_fine_for_a_compatible_service(server, config, http):
    server.api_key = None
    result = await plugin.chat(request=chat_request(), config=config(api_key=None), http=http)
    assert result.choices
    assert "authorization" not in server.last().headers


# ------------------------------------------------------------------------ completions, embed


async def test_complete(server, config, http):
    result = await plugin.complete(
        request=CompletionRequest(model="x", prompt="Once", max_tokens=2),
        config=config(),
        http=http,
    )
    assert result.choices[0].text == "Hello from"
    assert result.choices[0].finish_reason == "length"
    chunks = await drain(
        await plugin.complete(
            request=CompletionRequest(model="x", prompt="Once", stream=True),
            config=config(),
            http=http,
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake server."


@pytest.mark.parametrize("fmt", [None, "float", "base64"])
async def test_embeddings(server, config, http, fmt, client_kind):
    request = EmbeddingRequest(
        model="default", input=["alpha", "beta", "gamma"], encoding_format=fmt, dimensions=4
    )
    result = await plugin.embed(
        request=request, config=config(model="text-embedding-3-small"), http=http
    )
    sent = server.last("/v1/embeddings").json
    assert sent["model"] == "text-embedding-3-small"
    assert sent["dimensions"] == 4
    # the raw relay sends what the client asked; the SDK asks base64 and decodes it itself
    assert sent.get("encoding_format") == ("base64" if client_kind == "sdk" and not fmt else fmt)
    assert [d.index for d in result.data] == [0, 1, 2]
    for text, item in zip(["alpha", "beta", "gamma"], result.data, strict=True):
        if fmt == "base64":
            vec = struct.unpack("<4f", base64.b64decode(item.embedding))
        else:
            vec = item.embedding
        assert list(vec) == pytest.approx(fake_vector(text, 4), abs=1e-6)
    assert result.usage.prompt_tokens == 3


# -------------------------------------------------------------------------- models, health


async def test_list_models(server, config, http):
    models = await plugin.list_models(config=config(), http=http)
    assert [m.id for m in models] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert all(m.backend == "openai" for m in models)


async def test_health_ready_uses_models_endpoint(server, config, http):
    health = await plugin.health(config=config(), http=http)
    assert health.state == "ready"
    assert "gpt-4o-mini" in health.models
    assert [r.path for r in server.requests] == ["/v1/models"]  # never a paid call


def test_redact_key_fragments():
    message = "Incorrect API key provided: sk-proj-********abcd. You can find your API key at ..."
    assert inference_openai.plugin.redact(message) == (
        "Incorrect API key provided: sk-****. You can find your API key at ..."
    )


@pytest.mark.parametrize(
    ("setup", "detail"),
    [
        ({"api_key": "sk-wrong"}, "Incorrect API key"),
        ({"model": "gpt-9"}, "not offered"),
        ({"base_url": "http://127.0.0.1:9/v1"}, "connect"),
    ],
)
async def test_health_down(server, config, http, setup, detail):
    health = await plugin.health(config=config(**setup), http=http)
    assert health.state == "down"
    assert detail in health.detail
    assert "sk-wrong" not in health.detail
    assert "sk-fa" not in health.detail  # the fragment the service echoed is hidden too


async def test_health_down_on_500(server, config, http):
    server.behaviour = "500"
    health = await plugin.health(config=config(), http=http)
    assert health.state == "down"


async def test_bad_client_option(config, http):
    from inference_core import ConfigError

    with pytest.raises(ConfigError, match="raw, sdk"):
        await plugin.startup(config=config(options={"client": "fast"}))


async def test_all_errors_are_taxonomy_errors(server, config, http):
    for behaviour in ("400", "401", "404", "429", "500", "garbage", "reset", "truncated"):
        server.behaviour = behaviour
        with pytest.raises(InferenceError):
            await plugin.chat(request=chat_request(), config=config(), http=http)


async def test_embed_model_option(server, config, http):
    cfg = config(model="gpt-4o-mini", options={"embed_model": "text-embedding-3-small"})
    await plugin.embed(request=EmbeddingRequest(input="x"), config=cfg, http=http)
    assert server.last("/v1/embeddings").json["model"] == "text-embedding-3-small"
    await plugin.chat(request=chat_request(), config=cfg, http=http)
    assert server.last("/v1/chat/completions").json["model"] == "gpt-4o-mini"
    cfg = config(aliases={"emb": "text-embedding-3-large"}, options={"embed_model": "small"})
    await plugin.embed(request=EmbeddingRequest(model="emb", input="x"), config=cfg, http=http)
    assert server.last("/v1/embeddings").json["model"] == "text-embedding-3-large"


async def test_stale_pooled_connection_is_resent_once(client_kind):
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:  # what core's lean transport raises for a reused, closed one
            raise StaleConnection("Server disconnected without sending a response.")
        return httpx.Response(
            200,
            json={
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        cfg = make_config(
            "openai", base_url="http://x.test/v1", api_key="k", options={"client": client_kind}
        )
        r = await plugin.chat(request=chat_request(), config=cfg, http=http)
    assert r.choices[0].message.content == "hi"
    assert len(calls) == 2


async def test_a_fresh_connection_closed_before_the_answer_is_not_resent(client_kind):
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        cfg = make_config(
            "openai", base_url="http://x.test/v1", api_key="k", options={"client": client_kind}
        )
        with pytest.raises(InferenceError):
            await plugin.chat(request=chat_request(), config=cfg, http=http)
    assert len(calls) == 1


async def test_vllm_max_model_len_is_a_context_limit(client_kind):
    body = {
        "error": {
            "message": "max_tokens=4096 cannot be greater than max_model_len=512.",
            "type": "BadRequestError",
            "param": "max_tokens",
            "code": 400,
        }
    }
    transport = httpx.MockTransport(lambda r: httpx.Response(400, json=body))
    async with httpx.AsyncClient(transport=transport) as http:
        cfg = make_config(
            "openai", base_url="http://x.test/v1", api_key="k", options={"client": client_kind}
        )
        with pytest.raises(ContextLengthExceeded):
            await plugin.chat(request=chat_request(max_tokens=4096), config=cfg, http=http)
