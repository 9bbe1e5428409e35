"""The llama.cpp plugin against response bodies recorded from a real llama-server b11434."""

from __future__ import annotations

import base64

import pytest

import inference_llamacpp
from inference_core import (
    BackendConfig,
    CapabilityNotSupported,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    ConfigError,
    ContextLengthExceeded,
    EmbeddingRequest,
)

CHAT = "/v1/chat/completions"


@pytest.fixture
def plugin() -> inference_llamacpp.LlamaCppPlugin:
    return inference_llamacpp.LlamaCppPlugin()


def chat_request(**kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8, **kw)


def test_entry_point_is_declared():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="inference_core.backends") if e.name == "llamacpp"]
    assert ep.value == "inference_llamacpp:plugin"
    assert ep.load() is inference_llamacpp.plugin


async def test_chat_with_any_model_name(plugin, fake, http, config):
    fake.set("POST", CHAT, "unknown_model_chat.json")  # llama.cpp ignores the request's model
    result = await plugin.chat(
        request=chat_request(model="no-such-model"), config=config, http=http
    )
    assert isinstance(result, ChatResponse)
    assert result.model == "gemma-3-270m"  # the server's --alias comes back
    assert result.choices[0].message.role == "assistant"
    assert result.usage.completion_tokens == 8
    assert result.timings["predicted_n"] == 8  # llama.cpp's extra field survives
    assert result.raw is not None


async def test_stream_with_usage_chunk(plugin, fake, http, config):
    fake.set("POST", CHAT, "chat_stream.sse")
    request = chat_request(stream=True, stream_options={"include_usage": True})
    stream = await plugin.chat(request=request, config=config, http=http)
    chunks = [c async for c in stream]
    assert all(isinstance(c, ChatChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 16
    assert chunks[-2].choices[0].finish_reason == "length"
    assert fake.bodies(CHAT)[0]["stream_options"] == {"include_usage": True}


async def test_extra_sampling_params_pass_through(plugin, fake, http, config):
    request = chat_request(top_k=40, min_p=0.05, repeat_penalty=1.1, grammar="root ::= [a-z]+")
    await plugin.chat(request=request, config=config, http=http)
    (sent,) = fake.bodies(CHAT)
    assert (sent["top_k"], sent["min_p"], sent["repeat_penalty"]) == (40, 0.05, 1.1)
    assert sent["grammar"] == "root ::= [a-z]+"


async def test_completions_and_stream(plugin, fake, http, config):
    result = await plugin.complete(
        request=CompletionRequest(prompt="The capital of France is", max_tokens=8),
        config=config,
        http=http,
    )
    assert isinstance(result, CompletionResponse)
    assert result.object == "text_completion"
    fake.set("POST", "/v1/completions", "completions_stream.sse")
    stream = await plugin.complete(
        request=CompletionRequest(prompt="1, 2, 3,", max_tokens=6, stream=True),
        config=config,
        http=http,
    )
    chunks = [c async for c in stream]
    assert len(chunks) == 7
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 6


async def test_embeddings_list(plugin, http, config):
    request = EmbeddingRequest(input=["a", "b"])  # the recording embedded two texts
    result = await plugin.embed(request=request, config=config, http=http)
    assert [d.index for d in result.data] == [0, 1]
    assert {len(d.embedding) for d in result.data} == {640}


async def test_embeddings_base64(plugin, fake, http, config):
    fake.set("POST", "/v1/embeddings", "embeddings_base64.json")
    request = EmbeddingRequest(input="hi", encoding_format="base64")
    result = await plugin.embed(request=request, config=config, http=http)
    assert len(base64.b64decode(result.data[0].embedding)) == 640 * 4


async def test_embeddings_without_flag_is_capability_not_supported(plugin, fake, http, config):
    fake.set("POST", "/v1/embeddings", "err_no_embeddings.json", 501)
    with pytest.raises(CapabilityNotSupported, match="--embeddings"):
        await plugin.embed(request=EmbeddingRequest(input="x"), config=config, http=http)


async def test_embedding_input_over_batch_is_context_length(plugin, fake, http, config):
    fake.set("POST", "/v1/embeddings", "err_embeddings_too_long.json", 500)
    with pytest.raises(ContextLengthExceeded, match="too large") as info:
        await plugin.embed(request=EmbeddingRequest(input="x"), config=config, http=http)
    assert info.value.fallback


async def test_prompt_too_long_is_context_length(plugin, fake, http, config):
    fake.set("POST", CHAT, "err_prompt_too_long.json", 400)
    with pytest.raises(ContextLengthExceeded, match="exceeds the available context size"):
        await plugin.chat(request=chat_request(), config=config, http=http)


async def test_list_models_with_context_length(plugin, http, config):
    (model,) = await plugin.list_models(config=config, http=http)
    assert model.id == "gemma-3-270m"
    assert model.owned_by == "llamacpp"
    assert model.backend == "llamacpp"
    assert model.context_length == 2048  # per slot: -c 8192 / --parallel 4


async def test_health_ready_with_props_and_slots(plugin, http, config):
    health = await plugin.health(config=config, http=http)
    assert health.state == "ready"
    assert health.models == ["gemma-3-270m"]
    assert health.detail == "model gemma-3-270m, 0/4 slots busy of 2048 tokens"


async def test_health_slots_disabled_still_ready(plugin, fake, http, config):
    fake.routes[("GET", "/slots")] = (
        501,
        b'{"error":{"code":501,"message":"This server does not support slots endpoint.",'
        b'"type":"not_supported_error"}}',
        "application/json",
    )
    health = await plugin.health(config=config, http=http)
    assert health.state == "ready"
    assert health.detail == "model gemma-3-270m, 4 slots"


async def test_health_loading(plugin, fake, http, config):
    fake.set("GET", "/health", "health_loading.json", 503)
    health = await plugin.health(config=config, http=http)
    assert health.state == "loading"
    assert health.detail == "Loading model"
    assert not any(r.url.path == "/props" for r in fake.requests)


async def test_health_other_503_is_down(plugin, fake, http, config):
    fake.routes[("GET", "/health")] = (503, b'{"error":{"message":"boom"}}', "application/json")
    health = await plugin.health(config=config, http=http)
    assert health.state == "down"


async def test_health_without_url_or_child_is_down(plugin, http):
    health = await plugin.health(config=BackendConfig(name="llamacpp"), http=http)
    assert health.state == "down"
    assert "no base URL" in health.detail


async def test_startup_with_base_url_learns_slot_context(plugin, fake, http, config):
    started = await plugin.startup(config=config, http=http)
    assert started.base_urls == config.base_urls
    assert started.options["context_length"] == "2048"  # /props n_ctx: per slot
    assert started.options["max_concurrency"] == "4"  # /props total_slots: admission cap
    configured = config.model_copy(
        update={"options": {"context_length": "4096", "max_concurrency": "2"}}
    )
    assert await plugin.startup(config=configured, http=http) is None  # configured wins
    only_ctx = config.model_copy(update={"options": {"context_length": "4096"}})
    learned = await plugin.startup(config=only_ctx, http=http)
    assert learned.options == {"context_length": "4096", "max_concurrency": "4"}
    fake.routes.pop(("GET", "/props"))  # disabled or not up: no error, no context info
    assert await plugin.startup(config=config, http=http) is None
    await plugin.shutdown(config=config)  # nothing to stop, never raises


async def test_startup_unmanaged_without_url_is_a_config_error(plugin, http):
    cfg = BackendConfig(name="llamacpp", options={"managed": "false"})
    with pytest.raises(ConfigError, match="INFERENCE_LLAMACPP_BASE_URL"):
        await plugin.startup(config=cfg, http=http)


@pytest.mark.parametrize(
    ("key", "value"),
    [("ctx_size", "big"), ("parallel", "0"), ("threads", "-1"), ("managed", "maybe")],
)
async def test_bad_managed_options_name_the_variable(plugin, http, tmp_path, key, value):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    options = {"model_path": str(model), "server_bin": "/bin/true", key: value}
    cfg = BackendConfig(name="llamacpp", options=options)
    with pytest.raises(ConfigError, match=f"INFERENCE_LLAMACPP_{key.upper()}"):
        await plugin.startup(config=cfg, http=http)


async def test_missing_model_path_is_a_config_error(plugin, http, tmp_path):
    options = {"model_path": str(tmp_path / "nope.gguf"), "server_bin": "/bin/true"}
    with pytest.raises(ConfigError, match="INFERENCE_LLAMACPP_MODEL_PATH"):
        await plugin.startup(config=BackendConfig(name="llamacpp", options=options), http=http)
