"""inference-textgen against the protocol-faithful fake text-generation-webui server."""

from __future__ import annotations

import asyncio

import pytest

from inference_core import (
    AuthenticationFailed,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    ChatRequest,
    CompletionRequest,
    ConfigError,
    EmbeddingRequest,
    RateLimited,
)

USER = [{"role": "user", "content": "Say hello"}]
KEY = "tg-api-key"  # as in conftest.py
LOADED = "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"
OTHER = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"


def chat_request(**kw) -> ChatRequest:
    return ChatRequest(model=kw.pop("model", "default"), messages=USER, **kw)


async def drain(stream) -> list:
    return [item async for item in stream]


# ---------------------------------------------------------------------------------- chat


async def test_chat_reports_the_loaded_model(plugin, server, config, http):
    r = await plugin.chat(request=chat_request(model="gpt-4o"), config=config(), http=http)
    assert r.choices[0].message.content == "Hello from the fake server."
    assert r.model == LOADED
    assert r.raw is not None  # nothing had to change: the bytes are relayed as they came
    chat = server.last("/v1/chat/completions")
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert server.loads == []  # no autoload unless asked


async def test_answer_renamed_when_server_names_something_else(
    plugin, server, config, http, monkeypatch
):
    monkeypatch.setattr(server, "served_model", lambda requested: "stale-name")
    r = await plugin.chat(request=chat_request(), config=config(), http=http)
    assert r.model == LOADED
    assert r.raw is None  # changed, so no verbatim relay
    chunks = await drain(
        await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    )
    assert {c.model for c in chunks} == {LOADED}


async def test_model_info_is_cached_briefly(plugin, server, config, http):
    for _ in range(3):
        await plugin.chat(request=chat_request(), config=config(), http=http)
    paths = [r.path for r in server.requests]
    assert paths.count("/v1/internal/model/info") == 1
    assert paths.count("/v1/chat/completions") == 3


async def test_stream_with_usage(plugin, server, config, http):
    request = chat_request(stream=True, stream_options={"include_usage": True})
    chunks = await drain(await plugin.chat(request=request, config=config(), http=http))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from the fake server."
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5


async def test_n_above_one_with_stream_refused_before_sending(plugin, server, config, http):
    with pytest.raises(BadRequest) as info:
        await plugin.chat(request=chat_request(stream=True, n=2), config=config(), http=http)
    assert info.value.param == "n"
    with pytest.raises(BadRequest):
        await plugin.complete(
            request=CompletionRequest(prompt="x", stream=True, n=3), config=config(), http=http
        )
    assert server.requests == []


async def test_n_above_one_without_stream_is_fine(plugin, server, config, http):
    r = await plugin.chat(request=chat_request(n=2), config=config(), http=http)
    assert len(r.choices) == 2


async def test_complete(plugin, server, config, http):
    r = await plugin.complete(
        request=CompletionRequest(prompt="Once", max_tokens=3), config=config(), http=http
    )
    assert r.choices[0].text == "Hello from the"
    assert r.model == LOADED


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("429", RateLimited),
        ("500", BackendUnavailable),
        ("midstream_error", BackendUnavailable),
        ("truncated", BackendUnavailable),
    ],
)
async def test_stream_errors(plugin, server, config, http, behaviour, error):
    await plugin.loaded_model(http, config())  # cached, so the behaviour hits the chat call
    server.behaviour = behaviour
    with pytest.raises(error):
        await drain(
            await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
        )


async def test_wrong_api_key(plugin, server, config, http):
    with pytest.raises(AuthenticationFailed, match="Unauthorized"):
        await plugin.chat(request=chat_request(), config=config(api_key="nope"), http=http)


async def test_no_model_loaded(plugin, server, config, http):
    server.loaded_model = None
    with pytest.raises(BadRequest, match="No model is loaded"):
        await plugin.chat(request=chat_request(), config=config(), http=http)


# -------------------------------------------------------------------------------- autoload


async def test_autoload_loads_the_configured_model(plugin, server, config, http):
    cfg = config(model=OTHER, options={"autoload": "true"})
    r = await plugin.chat(request=chat_request(), config=cfg, http=http)
    assert server.loads == [OTHER]
    assert server.last("/v1/internal/model/load").headers["authorization"] == "Bearer tg-admin-key"
    assert r.model == OTHER
    await plugin.chat(request=chat_request(), config=cfg, http=http)
    assert server.loads == [OTHER]  # loaded once


async def test_autoload_uses_aliases(plugin, server, config, http):
    cfg = config(aliases={"small": OTHER}, options={"autoload": "true"})
    await plugin.chat(request=chat_request(model="small"), config=cfg, http=http)
    assert server.loads == [OTHER]


async def test_autoload_ignores_unknown_request_names(plugin, server, config, http):
    cfg = config(options={"autoload": "true"})
    r = await plugin.chat(request=chat_request(model="gpt-4o"), config=cfg, http=http)
    assert server.loads == []
    assert r.model == LOADED
    await plugin.chat(request=chat_request(model=OTHER), config=cfg, http=http)
    assert server.loads == [OTHER]  # a name the server has is loaded


async def test_concurrent_autoloads_are_serialised(plugin, server, config, http):
    server.load_delay = 0.2
    cfg = config(model=OTHER, options={"autoload": "true"})
    results = await asyncio.gather(
        *(plugin.chat(request=chat_request(), config=cfg, http=http) for _ in range(5))
    )
    assert server.loads == [OTHER]
    assert {r.model for r in results} == {OTHER}


async def test_failed_load_is_a_capability_gap(plugin, server, config, http):
    cfg = config(model="missing.gguf", options={"autoload": "true"})
    with pytest.raises(CapabilityNotSupported, match="could not load"):
        await plugin.chat(request=chat_request(), config=cfg, http=http)


async def test_bad_autoload_value(plugin, config):
    with pytest.raises(ConfigError, match="AUTOLOAD"):
        await plugin.startup(config=config(options={"autoload": "maybe"}))


# ---------------------------------------------------------------------------------- embed


async def test_embeddings_come_from_the_embedding_model(plugin, server, config, http):
    r = await plugin.embed(
        request=EmbeddingRequest(input=["a", "b"], encoding_format="base64"),
        config=config(),
        http=http,
    )
    assert len(r.data) == 2
    assert isinstance(r.data[0].embedding, str)
    assert r.model == "sentence-transformers/all-mpnet-base-v2"


# -------------------------------------------------------------------------- models, health


async def test_list_models_with_admin_key(plugin, server, config, http):
    models = await plugin.list_models(config=config(), http=http)
    assert [m.id for m in models] == [LOADED, OTHER]
    assert all(m.backend == "textgen" for m in models)
    assert server.last().path == "/v1/internal/model/list"


async def test_list_models_without_admin_key(plugin, server, config, http):
    server.admin_key = None  # the server falls back to the API key for admin routes
    cfg = config(options={"admin_key": ""})
    models = await plugin.list_models(config=cfg, http=http)
    assert [m.id for m in models] == [LOADED]
    assert server.last().path == "/v1/internal/model/info"


async def test_list_models_wrong_admin_key(plugin, server, config, http):
    with pytest.raises(AuthenticationFailed):
        await plugin.list_models(config=config(options={"admin_key": "bad"}), http=http)


async def test_health_ready(plugin, server, config, http):
    h = await plugin.health(config=config(), http=http)
    assert h.state == "ready"
    assert h.models == [LOADED]
    assert h.detail == f"loaded: {LOADED}"
    health = server.last("/v1/internal/health")
    assert health.headers["authorization"] == f"Bearer {KEY}"


async def test_health_mentions_a_different_configured_model(plugin, server, config, http):
    h = await plugin.health(config=config(model=OTHER), http=http)
    assert h.state == "ready"
    assert "AUTOLOAD=true" in h.detail


async def test_health_no_model_loaded(plugin, server, config, http):
    server.loaded_model = None
    h = await plugin.health(config=config(), http=http)
    assert h.state == "down"
    assert "no model is loaded" in h.detail
    h = await plugin.health(config=config(model=OTHER, options={"autoload": "1"}), http=http)
    assert h.state == "ready"


@pytest.mark.parametrize(
    ("setup", "detail"),
    [
        ({"api_key": "wrong"}, "Unauthorized"),
        ({"base_url": "http://127.0.0.1:9"}, "connect"),
    ],
)
async def test_health_down(plugin, server, config, http, setup, detail):
    h = await plugin.health(config=config(**setup), http=http)
    assert h.state == "down"
    assert detail in h.detail


async def test_health_down_on_500(plugin, server, config, http):
    server.behaviour = "500"
    h = await plugin.health(config=config(), http=http)
    assert h.state == "down"


async def test_stream_usage_current_server(plugin, server, config, http):
    asked = await drain(
        await plugin.chat(
            request=chat_request(stream=True, stream_options={"include_usage": True}),
            config=config(),
            http=http,
        )
    )
    assert asked[-1].choices == []
    assert asked[-1].usage.completion_tokens == 5
    assert all(c.raw is not None for c in asked)  # already OpenAI-shaped: relayed verbatim
    plain = await drain(
        await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    )
    assert all(c.usage is None for c in plain)


async def test_stream_usage_moved_only_when_asked_legacy_server(plugin, server, config, http):
    server.legacy_stream = True
    asked = await drain(
        await plugin.chat(
            request=chat_request(stream=True, stream_options={"include_usage": True}),
            config=config(),
            http=http,
        )
    )
    assert [c.usage is not None for c in asked].count(True) == 1
    assert asked[-2].choices[0].finish_reason == "stop"
    assert asked[-2].usage is None
    plain = await drain(
        await plugin.chat(request=chat_request(stream=True), config=config(), http=http)
    )
    # not asked for: text-generation-webui's own usage on the last chunk stays, bytes intact
    assert plain[-1].choices[0].finish_reason == "stop"
    assert plain[-1].usage.total_tokens > 0
    assert all(c.raw is not None for c in plain)


async def test_load_that_silently_fails_is_a_capability_gap(plugin, server, config, http):
    server.silent_load_failure = True  # 200 {"status_code": 400, ...} and nothing loaded
    cfg = config(model="missing.gguf", options={"autoload": "true"})
    with pytest.raises(CapabilityNotSupported, match="did not load"):
        await plugin.chat(request=chat_request(), config=cfg, http=http)


async def test_autoload_without_admin_access_serves_the_loaded_model(plugin, server, config, http):
    cfg = config(options={"autoload": "true", "admin_key": "wrong"})
    r = await plugin.chat(request=chat_request(model=OTHER), config=cfg, http=http)
    assert r.model == LOADED
    assert server.loads == []
