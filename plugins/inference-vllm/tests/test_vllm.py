"""The vLLM plugin against response bodies recorded from a real vLLM 0.32.0 server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import inference_vllm
from inference_core import (
    AuthenticationFailed,
    BackendConfig,
    BackendTimeout,
    BackendUnavailable,
    CapabilityNotSupported,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    ContextLengthExceeded,
    EmbeddingRequest,
    ModelNotFound,
)
from inference_vllm.metrics import parse_prometheus

CHAT = "/v1/chat/completions"


@pytest.fixture
def plugin() -> inference_vllm.VLLMPlugin:
    return inference_vllm.VLLMPlugin()


def chat_request(**kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8, **kw)


def test_entry_point_is_declared():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="inference_core.backends") if e.name == "vllm"]
    assert ep.value == "inference_vllm:plugin"
    assert ep.load() is inference_vllm.plugin


async def test_chat_maps_model_and_keeps_raw(plugin, fake, http, config):
    result = await plugin.chat(request=chat_request(model="default"), config=config, http=http)
    assert isinstance(result, ChatResponse)
    assert result.model == "gemma3-270m"
    assert result.choices[0].finish_reason == "length"
    assert result.usage.total_tokens == 42
    assert result.raw == fake.routes[("POST", CHAT)][1]  # relayed verbatim by the gateway
    (sent,) = fake.bodies(CHAT)
    assert sent["model"] == "gemma3-270m"  # the alias never reaches vLLM
    assert sent["max_tokens"] == 8


async def test_extra_sampling_and_structured_params_pass_through(plugin, fake, http, config):
    request = chat_request(
        top_k=20,
        min_p=0.05,
        repetition_penalty=1.1,
        structured_outputs={"choice": ["yes", "no"]},
        guided_json={"type": "object"},
    )
    await plugin.chat(request=request, config=config, http=http)
    (sent,) = fake.bodies(CHAT)
    assert sent["top_k"] == 20
    assert sent["min_p"] == 0.05
    assert sent["repetition_penalty"] == 1.1
    assert sent["structured_outputs"] == {"choice": ["yes", "no"]}
    assert sent["guided_json"] == {"type": "object"}


async def test_api_key_sent_as_bearer(plugin, fake, http, config):
    keyed = BackendConfig(name="vllm", base_urls=config.base_urls, api_key="sk-peer-test")
    await plugin.chat(request=chat_request(), config=keyed, http=http)
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-peer-test"


async def test_default_model_resolved_from_server_when_unconfigured(plugin, fake, http):
    config = BackendConfig(name="vllm", base_urls=("http://vllm.test:8000",))
    await plugin.chat(request=chat_request(), config=config, http=http)
    await plugin.chat(request=chat_request(), config=config, http=http)
    assert [b["model"] for b in fake.bodies(CHAT)] == ["gemma3-270m", "gemma3-270m"]
    # /v1/models was asked once and cached
    assert sum(r.url.path == "/v1/models" for r in fake.requests) == 1


async def test_named_model_passes_through_when_unconfigured(plugin, fake, http):
    config = BackendConfig(name="vllm", base_urls=("http://vllm.test:8000",))
    fake.set("POST", CHAT, "err_unknown_model.json", 404)
    with pytest.raises(ModelNotFound) as info:
        await plugin.chat(request=chat_request(model="no-such-model"), config=config, http=http)
    assert fake.bodies(CHAT)[0]["model"] == "no-such-model"
    assert "does not exist" in info.value.message
    assert info.value.param == "model"
    assert not info.value.fallback


async def test_stream_relays_chunks_and_usage(plugin, fake, http, config):
    fake.set("POST", CHAT, "chat_stream.sse")
    request = chat_request(stream=True, stream_options={"include_usage": True})
    stream = await plugin.chat(request=request, config=config, http=http)
    chunks = [c async for c in stream]
    assert all(isinstance(c, ChatChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 12
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "length"
    assert all(c.raw for c in chunks)
    assert fake.bodies(CHAT)[0]["stream_options"] == {"include_usage": True}


async def test_truncated_stream_is_an_error(plugin, fake, http, config):
    sse = (Path(__file__).parent / "data" / "chat_stream.sse").read_bytes()
    cut = b"\n\n".join(sse.split(b"\n\n")[:5]) + b"\n\n"  # the server died mid-stream
    fake.routes[("POST", CHAT)] = (200, cut, "text/event-stream")
    stream = await plugin.chat(request=chat_request(stream=True), config=config, http=http)
    with pytest.raises(BackendUnavailable, match="before \\[DONE\\]"):
        async for _ in stream:
            pass


async def test_completions(plugin, fake, http, config):
    request = CompletionRequest(prompt="The capital of France is", max_tokens=8)
    result = await plugin.complete(request=request, config=config, http=http)
    assert isinstance(result, CompletionResponse)
    assert result.object == "text_completion"
    assert result.choices[0].finish_reason == "length"
    fake.set("POST", "/v1/completions", "completions_stream.sse")
    stream = await plugin.complete(
        request=CompletionRequest(prompt="x", max_tokens=8, stream=True), config=config, http=http
    )
    chunks = [c async for c in stream]
    assert len(chunks) > 2
    assert all(isinstance(c, CompletionResponse) for c in chunks)


async def test_prompt_too_long_is_context_length(plugin, fake, http, config):
    fake.set("POST", "/v1/completions", "err_prompt_over_context.json", 400)
    with pytest.raises(ContextLengthExceeded) as info:
        await plugin.complete(
            request=CompletionRequest(prompt="word " * 600, max_tokens=4), config=config, http=http
        )
    assert info.value.param == "input_tokens"
    assert info.value.fallback


async def test_max_tokens_over_model_len_is_context_length(plugin, fake, http, config):
    fake.set("POST", CHAT, "err_max_tokens_over_context.json", 400)
    with pytest.raises(ContextLengthExceeded) as info:
        await plugin.chat(request=chat_request(), config=config, http=http)
    assert info.value.param == "max_tokens"
    assert "max_model_len" in info.value.message


async def test_unauthorized_is_authentication_failed(plugin, fake, http, config):
    fake.set("POST", CHAT, "err_unauthorized.json", 401)
    with pytest.raises(AuthenticationFailed) as info:
        await plugin.chat(request=chat_request(), config=config, http=http)
    assert info.value.fallback
    assert "Unauthorized" in info.value.message


async def test_embeddings_on_chat_server_is_capability_not_supported(plugin, fake, http, config):
    fake.set("POST", "/v1/embeddings", "err_embeddings_on_chat_model.json", 404)
    with pytest.raises(CapabilityNotSupported) as info:
        await plugin.embed(request=EmbeddingRequest(input="hi"), config=config, http=http)
    assert "pooling" in info.value.message
    assert info.value.fallback


async def test_embeddings_on_separate_embed_server(plugin, fake, http, config):
    fake.set("POST", "/v1/embeddings", "embeddings.json")
    options = {"embed_base_url": "http://vllm-embed.test:8001", "embed_model": "all-MiniLM-L6-v2"}
    cfg = config.model_copy(update={"options": options})
    request = EmbeddingRequest(input=["A man is eating food.", "A man is eating a piece of bread."])
    result = await plugin.embed(request=request, config=cfg, http=http)
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 384 for d in result.data)
    sent = fake.requests[-1]
    assert sent.url.host == "vllm-embed.test"
    assert fake.bodies("/v1/embeddings")[0]["model"] == "all-MiniLM-L6-v2"


async def test_embed_base64_passes_through(plugin, fake, http, config):
    vec = base64.b64encode(b"\x00\x00\x80?" * 4).decode()
    body = (
        b'{"id":"embd-1","object":"list","created":1,"model":"m","data":[{"index":0,'
        b'"object":"embedding","embedding":"' + vec.encode() + b'"}],"usage":{"prompt_tokens":1,'
        b'"total_tokens":1}}'
    )
    fake.routes[("POST", "/v1/embeddings")] = (200, body, "application/json")
    request = EmbeddingRequest(input="hi", encoding_format="base64")
    result = await plugin.embed(request=request, config=config, http=http)
    assert result.data[0].embedding == vec
    assert fake.bodies("/v1/embeddings")[0]["encoding_format"] == "base64"


async def test_list_models_with_context_length(plugin, http, config):
    models = await plugin.list_models(config=config, http=http)
    assert [m.id for m in models] == ["gemma3-270m"]
    assert models[0].backend == "vllm"
    assert models[0].context_length == 512
    assert models[0].owned_by == "vllm"


async def test_health_ready_with_models(plugin, http, config):
    health = await plugin.health(config=config, http=http)
    assert health.state == "ready"
    assert health.models == ["gemma3-270m"]
    assert health.latency_ms is not None


async def test_health_with_a_rejected_api_key_is_down(plugin, fake, http, config):
    fake.set("GET", "/v1/models", "err_unauthorized.json", 401)  # /health itself needs no key
    health = await plugin.health(config=config, http=http)
    assert health.state == "down"
    assert "API key" in health.detail


async def test_health_503_is_down(plugin, fake, http, config):
    fake.routes[("GET", "/health")] = (503, b"", "application/json")
    health = await plugin.health(config=config, http=http)
    assert health.state == "down"
    assert "503" in health.detail


async def test_health_connection_refused_is_down(plugin):
    import httpx

    from inference_core.http import create_client

    def refuse(request):
        raise httpx.ConnectError("Connection refused", request=request)

    async with create_client(transport=httpx.MockTransport(refuse)) as http:
        cfg = BackendConfig(name="vllm", base_urls=("http://127.0.0.1:1",))
        health = await plugin.health(config=cfg, http=http)
    assert health.state == "down"
    assert "connect" in health.detail


async def test_health_probe_has_a_deadline(plugin, fake, http, config):
    import httpx

    def hang(request):
        raise httpx.ReadTimeout("timed out", request=request)

    fake.routes[("GET", "/health")] = lambda request: hang(request)
    cfg = config.model_copy(update={"options": {"health_timeout": "0.2"}})
    health = await plugin.health(config=cfg, http=http)
    assert health.state == "down"
    assert "timed out" in health.detail
    (probe,) = [r for r in fake.requests if r.url.path == "/health"]
    assert probe.extensions["timeout"]["read"] == 0.2


def _metrics(running: float, prompt: float, gen: float) -> bytes:
    return (
        f'vllm:num_requests_running{{engine="0",model_name="m"}} {running}\n'
        f'vllm:num_requests_waiting{{engine="0",model_name="m"}} 0.0\n'
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} 0.25\n'
        f'vllm:prompt_tokens_total{{engine="0",model_name="m"}} {prompt}\n'
        f'vllm:generation_tokens_total{{engine="0",model_name="m"}} {gen}\n'
    ).encode()


async def test_deep_health_detects_a_stalled_engine(plugin, fake, http, config):
    cfg = config.model_copy(
        update={"options": {"health_deep": "true", "health_stall_seconds": "0"}}
    )
    fake.routes[("GET", "/metrics")] = (200, _metrics(2, 100, 50), "text/plain")
    first = await plugin.health(config=cfg, http=http)
    assert first.state == "ready"
    assert "2 running" in first.detail
    assert "kv cache 25%" in first.detail
    # the counters do not move while two requests are running: stalled
    second = await plugin.health(config=cfg, http=http)
    assert second.state == "down"
    assert "stalled" in second.detail
    # progress again
    fake.routes[("GET", "/metrics")] = (200, _metrics(2, 100, 60), "text/plain")
    third = await plugin.health(config=cfg, http=http)
    assert third.state == "ready"


async def test_deep_health_idle_engine_is_ready(plugin, fake, http, config):
    cfg = config.model_copy(
        update={"options": {"health_deep": "true", "health_stall_seconds": "0"}}
    )
    for _ in range(3):  # recorded /metrics of an idle server: nothing running, nothing moving
        health = await plugin.health(config=cfg, http=http)
        assert health.state == "ready"
        assert "0 running" in health.detail


async def test_health_timeout_option_must_be_a_number(plugin, http, config):
    from inference_core import ConfigError

    cfg = config.model_copy(update={"options": {"health_timeout": "soon"}})
    with pytest.raises(ConfigError, match="INFERENCE_VLLM_HEALTH_TIMEOUT"):
        await plugin.startup(config=cfg, http=http)
    health = await plugin.health(config=cfg, http=http)  # health never raises
    assert health.state == "down"
    assert "INFERENCE_VLLM_HEALTH_TIMEOUT" in health.detail


async def test_health_deep_option_must_be_a_boolean(plugin, http, config):
    from inference_core import ConfigError

    cfg = config.model_copy(update={"options": {"health_deep": "maybe"}})
    with pytest.raises(ConfigError, match="INFERENCE_VLLM_HEALTH_DEEP='maybe': not a boolean"):
        await plugin.startup(config=cfg, http=http)
    health = await plugin.health(config=cfg, http=http)  # health never raises
    assert health.state == "down"
    assert "INFERENCE_VLLM_HEALTH_DEEP" in health.detail


async def test_startup_learns_context_length(plugin, http, config):
    started = await plugin.startup(config=config, http=http)
    assert started.options["context_length"] == "512"  # max_model_len of the served model
    assert started.base_urls == config.base_urls
    configured = config.model_copy(update={"options": {"context_length": "4096"}})
    assert await plugin.startup(config=configured, http=http) is None


async def test_startup_with_server_down_is_not_an_error(plugin):
    import httpx

    from inference_core.http import create_client

    def refuse(request):
        raise httpx.ConnectError("Connection refused", request=request)

    async with create_client(transport=httpx.MockTransport(refuse)) as http:
        cfg = BackendConfig(name="vllm", base_urls=("http://127.0.0.1:1",))
        assert await plugin.startup(config=cfg, http=http) is None


def test_parse_prometheus_sums_label_sets():
    text = (
        "# HELP x\n# TYPE x gauge\n"
        'vllm:num_requests_running{engine="0",model_name="a"} 1.0\n'
        'vllm:num_requests_running{engine="1",model_name="a"} 2.0\n'
        "plain_metric 3\n"
        'with_space{label="a b"} 4 1700000000\n'
        "broken{\n"
    )
    values = parse_prometheus(text)
    assert values["vllm:num_requests_running"] == 3.0
    assert values["plain_metric"] == 3.0
    assert values["with_space"] == 4.0
    assert "broken{" not in values


async def test_timeout_while_waiting_is_backend_timeout(plugin, fake, http, config):
    import httpx

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    fake.routes[("POST", CHAT)] = lambda request: slow(request)
    with pytest.raises(BackendTimeout):
        await plugin.chat(request=chat_request(), config=config, http=http)
