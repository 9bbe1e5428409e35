"""inference-ollama against the protocol-faithful fake Ollama server."""

from __future__ import annotations

import base64
import json
import struct

import pytest

import inference_ollama
from inference_core import (
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ChatRequest,
    ConfigError,
    EmbeddingRequest,
    ModelNotFound,
    RateLimited,
)
from tests.fakes import fake_vector

plugin = inference_ollama.plugin
USER = [{"role": "user", "content": "Say hello please"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def chat_request(**kw) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "default"), messages=kw.pop("messages", USER), **kw)


async def drain(stream) -> list:
    return [item async for item in stream]


async def call_and_drain(request, config, http):
    result = await plugin.chat(request=request, config=config, http=http)
    return await drain(result) if request.stream else result


# ---------------------------------------------------------------------------------- chat


async def test_chat(server, config, http):
    r = await plugin.chat(request=chat_request(max_tokens=50), config=config(), http=http)
    assert r.choices[0].message.content == "Hello from the fake server."
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "llama3.2:1b"
    assert r.usage.prompt_tokens == 3  # prompt_eval_count
    assert r.usage.completion_tokens == 5  # eval_count
    assert r.id.startswith("chatcmpl-")
    sent = server.last("/api/chat").json
    assert sent["model"] == "llama3.2:1b"
    assert sent["stream"] is False
    assert sent["options"] == {"num_predict": 50}


async def test_length_limit(server, config, http):
    r = await plugin.chat(request=chat_request(max_tokens=2), config=config(), http=http)
    assert r.choices[0].message.content == "Hello from"
    assert r.choices[0].finish_reason == "length"


async def test_json_mode_and_keep_alive_and_num_ctx_reach_ollama(server, config, http):
    cfg = config(options={"keep_alive": "10m", "num_ctx": "8192"})
    r = await plugin.chat(
        request=chat_request(response_format={"type": "json_object"}, top_k=5),
        config=cfg,
        http=http,
    )
    assert json.loads(r.choices[0].message.content) == {"reply": "Hello from the fake server."}
    sent = server.last("/api/chat").json
    assert sent["format"] == "json"
    assert sent["keep_alive"] == "10m"
    assert sent["options"] == {"top_k": 5, "num_ctx": 8192, "num_predict": 8192}


async def test_images_reach_ollama(server, config, http):
    content = [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]
    await plugin.chat(
        request=chat_request(messages=[{"role": "user", "content": content}]),
        config=config(),
        http=http,
    )
    assert server.last("/api/chat").json["messages"][0]["images"] == ["/9j/4AAQ"]


async def test_tool_call(server, config, http):
    server.behaviour = "tool_call"
    r = await plugin.chat(request=chat_request(tools=TOOLS), config=config(), http=http)
    call = r.choices[0].message.tool_calls[0]
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris", "unit": "celsius"}
    assert r.choices[0].finish_reason == "tool_calls"
    assert server.last("/api/chat").json["tools"] == TOOLS


# ------------------------------------------------------------------------------- streaming


async def test_stream_with_usage(server, config, http):
    request = chat_request(stream=True, stream_options={"include_usage": True})
    chunks = await drain(await plugin.chat(request=request, config=config(), http=http))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake server."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == {
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "total_tokens": 8,
    }
    assert len({c.id for c in chunks}) == 1
    assert server.last("/api/chat").json["stream"] is True


async def test_stream_without_usage(server, config, http):
    chunks = await drain(
        await plugin.chat(
            request=chat_request(stream=True, max_tokens=3), config=config(), http=http
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the"


async def test_stream_tool_call(server, config, http):
    server.behaviour = "tool_call"
    chunks = await drain(
        await plugin.chat(
            request=chat_request(stream=True, tools=TOOLS), config=config(), http=http
        )
    )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1
    assert calls[0]["index"] == 0
    assert json.loads(calls[0]["function"]["arguments"]) == {"location": "Paris", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_midstream_error_line_is_raised(server, config, http):
    server.behaviour = "midstream_error"
    stream = await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(BackendUnavailable, match="unexpected EOF"):
        await drain(stream)


async def test_stream_without_done_is_truncated(server, config, http):
    server.behaviour = "truncated"
    stream = await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    await stream.__anext__()
    with pytest.raises(BackendUnavailable, match="truncated"):
        await drain(stream)


@pytest.mark.parametrize("behaviour", ["reset", "garbage"])
async def test_broken_streams(server, config, http, behaviour):
    server.behaviour = behaviour
    with pytest.raises(BackendUnavailable):
        await drain(
            await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
        )


async def test_stream_closed_early_leaves_the_pool_usable(server, config, http):
    server.chunk_delay = 0.05
    stream = await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    await stream.__anext__()
    await stream.aclose()
    r = await plugin.chat(request=chat_request(), config=config(), http=http)
    assert r.choices[0].message.content


# ---------------------------------------------------------------------------------- errors


async def test_missing_model_is_model_not_found(server, config, http):
    with pytest.raises(ModelNotFound, match="not found"):
        await plugin.chat(request=chat_request(), config=config(model="qwen3:32b"), http=http)


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("400", BadRequest),
        ("404", ModelNotFound),
        ("429", RateLimited),
        ("500", BackendUnavailable),
        ("503", BackendUnavailable),
        ("garbage", BackendUnavailable),
        ("truncated", BackendUnavailable),
        ("reset", BackendUnavailable),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_mapping(server, config, http, behaviour, error, stream):
    server.behaviour = behaviour
    with pytest.raises(error) as info:
        await call_and_drain(chat_request(stream=stream), config(), http)
    assert info.value.backend == "ollama"
    if behaviour == "429":
        assert info.value.retry_after == 1.0


async def test_cold_load_timeout(server, config, http):
    server.behaviour = "slow"
    server.delay = 1.0
    cfg = config(timeout=0.1, options={"load_timeout": "0.2"})
    with pytest.raises(BackendTimeout):
        await plugin.chat(request=chat_request(), config=cfg, http=http)


async def test_read_timeout_is_generous_by_default(server, config, http):
    server.behaviour = "slow"
    server.delay = 0.3
    # TIMEOUT=0.1 alone would fail; the load allowance (default 300 s) covers a cold start
    r = await plugin.chat(request=chat_request(), config=config(timeout=0.1), http=http)
    assert r.choices


async def test_connection_refused(config, http):
    with pytest.raises(BackendUnavailable):
        await plugin.chat(
            request=chat_request(), config=config(base_url="http://127.0.0.1:9"), http=http
        )


# ---------------------------------------------------------------------------------- embed


@pytest.mark.parametrize("fmt", [None, "float", "base64"])
async def test_embed_batched_native(server, config, http, fmt):
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    request = EmbeddingRequest(model="default", input=texts, encoding_format=fmt, dimensions=4)
    result = await plugin.embed(request=request, config=config(model="nomic-embed-text"), http=http)
    paths = [r.path for r in server.requests]
    assert paths == ["/api/embed"]  # one batched call, never /api/embeddings
    sent = server.last().json
    assert sent == {"model": "nomic-embed-text", "input": texts, "dimensions": 4}
    assert [d.index for d in result.data] == [0, 1, 2]
    for text, item in zip(texts, result.data, strict=True):
        vec = (
            struct.unpack("<4f", base64.b64decode(item.embedding))
            if fmt == "base64"
            else item.embedding
        )
        assert list(vec) == pytest.approx(fake_vector(text, 4), abs=1e-6)
    assert result.usage.prompt_tokens == 6  # Ollama's prompt_eval_count, not a word split here
    assert result.model == "nomic-embed-text"


async def test_embed_single_string(server, config, http):
    result = await plugin.embed(
        request=EmbeddingRequest(input="hello"), config=config(model="nomic-embed-text"), http=http
    )
    assert len(result.data) == 1
    assert server.last().json["input"] == ["hello"]


async def test_embed_errors(server, config, http):
    with pytest.raises(ModelNotFound):
        await plugin.embed(
            request=EmbeddingRequest(input="x"), config=config(model="nope"), http=http
        )


# -------------------------------------------------------------------------- models, health


async def test_list_models(server, config, http):
    models = await plugin.list_models(config=config(), http=http)
    assert [m.id for m in models] == ["llama3.2:1b", "nomic-embed-text:latest"]
    assert all(m.backend == "ollama" and m.owned_by == "ollama" for m in models)
    assert models[0].created > 0


async def test_health_ready(server, config, http):
    health = await plugin.health(config=config(), http=http)
    assert health.state == "ready"
    assert health.detail == "Ollama 0.12.6"
    assert health.models == ["llama3.2:1b", "nomic-embed-text:latest"]
    assert [r.path for r in server.requests] == ["/api/version", "/api/tags"]


async def test_health_latest_tag_matches(server, config, http):
    health = await plugin.health(config=config(model="nomic-embed-text"), http=http)
    assert health.state == "ready"


async def test_health_model_not_pulled(server, config, http):
    health = await plugin.health(config=config(model="qwen3:32b"), http=http)
    assert health.state == "down"
    assert "model not pulled" in health.detail
    assert "ollama pull qwen3:32b" in health.detail


@pytest.mark.parametrize("behaviour", ["500", "garbage", "slow"])
async def test_health_down(server, config, http, behaviour):
    server.behaviour = behaviour
    server.delay = 1
    cfg = config(timeout=0.2)
    http.timeout = 0.2  # core bounds health with HEALTH_CHECK_TIMEOUT; emulate a short one
    health = await plugin.health(config=cfg, http=http)
    assert health.state == "down"
    assert health.detail


async def test_health_unreachable(config, http):
    health = await plugin.health(config=config(base_url="http://127.0.0.1:9"), http=http)
    assert health.state == "down"
    assert "connect" in health.detail


# --------------------------------------------------------------------------------- startup


async def test_startup_num_ctx_becomes_context_length(config):
    new = await plugin.startup(config=config(options={"num_ctx": "32768"}))
    assert new.options["context_length"] == "32768"
    assert await plugin.startup(config=config()) is None
    with pytest.raises(ConfigError, match="LOAD_TIMEOUT"):
        await plugin.startup(config=config(options={"load_timeout": "soon"}))


async def test_embed_model_option(server, config, http):
    cfg = config(model="llama3.2:1b", options={"embed_model": "nomic-embed-text"})
    result = await plugin.embed(request=EmbeddingRequest(input="x"), config=cfg, http=http)
    assert server.last("/api/embed").json["model"] == "nomic-embed-text"
    assert result.model == "nomic-embed-text"


async def test_model_without_tool_support_is_a_capability_gap(server, config, http):
    from inference_core import CapabilityNotSupported

    server.tool_models = ["qwen3:8b"]
    with pytest.raises(CapabilityNotSupported, match="does not support tools") as info:
        await plugin.chat(request=chat_request(tools=TOOLS), config=config(), http=http)
    assert info.value.fallback  # the router tries a backend whose model can call tools
