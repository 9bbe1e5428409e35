"""inference-llamacpp against a REAL llama-server (b11434, Gemma 3 270M base model).

Structure only, never generated text (a base model's replies are junk); ``max_tokens`` <= 8.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time

import pytest

import inference_llamacpp
from inference_core import (
    BackendConfig,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    ContextLengthExceeded,
    EmbeddingRequest,
    RequestTrace,
    Router,
)

pytestmark = pytest.mark.llamacpp


def chat(**kw) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Say hello."}])
    kw.setdefault("max_tokens", 4)
    return ChatRequest(temperature=0, **kw)


@pytest.fixture
def plugin() -> inference_llamacpp.LlamaCppPlugin:
    return inference_llamacpp.LlamaCppPlugin()


@pytest.fixture
def config(llamacpp_url: str) -> BackendConfig:
    return BackendConfig(name="llamacpp", base_urls=(llamacpp_url,))


# ------------------------------------------------------------------- external server


async def test_chat_any_model_name(plugin, config, http):
    result = await plugin.chat(request=chat(model="no-such-model"), config=config, http=http)
    assert isinstance(result, ChatResponse)
    assert result.model == "gemma-3-270m"  # the server's --alias, whatever was asked
    assert result.choices[0].message.role == "assistant"
    assert isinstance(result.choices[0].message.content, str)
    assert result.choices[0].finish_reason in ("length", "stop")
    assert 1 <= result.usage.completion_tokens <= 4
    assert result.raw is not None


async def test_stream_with_usage(plugin, config, http):
    request = chat(stream=True, stream_options={"include_usage": True}, max_tokens=6)
    stream = await plugin.chat(request=request, config=config, http=http)
    chunks = [c async for c in stream]
    assert all(isinstance(c, ChatChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1]
    assert usage.choices == []
    assert usage.usage.completion_tokens == 6
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + 6
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"


async def test_stream_then_reuse_of_the_pool(plugin, config, http):
    """llama-server closes the connection after every stream while advertising keep-alive;
    core's one-shot resend on a stale pooled connection must hide that completely."""
    for _ in range(4):
        stream = await plugin.chat(
            request=chat(stream=True, max_tokens=2), config=config, http=http
        )
        assert [c async for c in stream]
        result = await plugin.chat(request=chat(max_tokens=2), config=config, http=http)
        assert isinstance(result, ChatResponse)


async def test_extra_sampling_params_accepted(plugin, config, http):
    request = chat(top_k=20, min_p=0.1, repeat_penalty=1.1, typical_p=0.9, cache_prompt=False)
    result = await plugin.chat(request=request, config=config, http=http)
    assert result.choices


async def test_completions(plugin, config, http):
    result = await plugin.complete(
        request=CompletionRequest(prompt="The capital of France is", max_tokens=4, temperature=0),
        config=config,
        http=http,
    )
    assert isinstance(result, CompletionResponse)
    assert result.object == "text_completion"
    assert result.usage.completion_tokens == 4
    stream = await plugin.complete(
        request=CompletionRequest(prompt="1, 2, 3,", max_tokens=4, stream=True),
        config=config,
        http=http,
    )
    chunks = [c async for c in stream]
    assert len(chunks) >= 2
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_embeddings(plugin, config, http):
    texts = ["alpha", "beta gamma", "delta"]
    result = await plugin.embed(request=EmbeddingRequest(input=texts), config=config, http=http)
    assert [d.index for d in result.data] == [0, 1, 2]
    assert {len(d.embedding) for d in result.data} == {640}
    assert result.usage.prompt_tokens > 0
    encoded = await plugin.embed(
        request=EmbeddingRequest(input="alpha", encoding_format="base64"), config=config, http=http
    )
    assert len(base64.b64decode(encoded.data[0].embedding)) == 640 * 4


async def test_models(plugin, config, http):
    (model,) = await plugin.list_models(config=config, http=http)
    assert model.id == "gemma-3-270m"
    assert model.backend == "llamacpp"
    assert model.context_length == 2048
    started = await plugin.startup(config=config, http=http)  # external: learns the context
    assert started.options["context_length"] == "2048"


async def test_health_ready_with_slots(plugin, config, http):
    health = await plugin.health(config=config, http=http)
    assert health.state == "ready"
    assert health.models == ["gemma-3-270m"]
    assert "slots busy of 2048 tokens" in health.detail
    assert health.latency_ms is not None


async def test_prompt_over_slot_context_is_context_length(plugin, config, http):
    request = chat(messages=[{"role": "user", "content": "hello " * 3000}])
    with pytest.raises(ContextLengthExceeded) as info:
        await plugin.chat(request=request, config=config, http=http)
    assert "context size" in info.value.message
    assert info.value.fallback


async def test_embedding_input_over_batch_is_context_length(plugin, config, http):
    request = EmbeddingRequest(input="hello " * 1000)
    with pytest.raises(ContextLengthExceeded, match="too large to process"):
        await plugin.embed(request=request, config=config, http=http)


# ----------------------------------------------------------- managed (embedded) server


def managed_config(assets, port: int, **options: str) -> BackendConfig:
    return BackendConfig(name="llamacpp", options={"port": str(port), "threads": "1", **options})


async def test_loading_state_is_observed_on_a_fresh_server(plugin, llama_assets, free_port, http):
    """Poll every 20 ms from the moment of spawn, as an outside observer would (a config with
    the URL, another plugin instance): connection refused -> down, 503 -> loading, 200 -> ready."""
    observer = inference_llamacpp.LlamaCppPlugin()
    url = f"http://127.0.0.1:{free_port}"
    outside = BackendConfig(name="llamacpp", base_urls=(url,))
    started = asyncio.create_task(
        plugin.startup(config=managed_config(llama_assets, free_port), http=http)
    )
    timeline: list[tuple[float, str, str | None]] = []
    t0 = time.monotonic()
    try:
        while True:
            h = await observer.health(config=outside, http=http)
            timeline.append((round(time.monotonic() - t0, 3), h.state, h.detail))
            if h.state == "ready" or time.monotonic() - t0 > 60:
                break
            await asyncio.sleep(0.02)
        await started
    finally:
        await plugin.shutdown(config=managed_config(llama_assets, free_port))
    states = [s for _, s, _ in timeline]
    assert states[-1] == "ready", timeline[-5:]
    assert "loading" in states, f"503 Loading model never seen: {timeline}"
    first_loading = states.index("loading")
    assert set(states[:first_loading]) <= {"down"}  # refused before it listened
    loading_detail = timeline[first_loading][2]
    assert loading_detail == "Loading model"  # the real 503 body, not our guess
    assert "down" not in states[first_loading:]
    print(
        "health timeline (s, state):",
        [(t, s) for t, s, _ in timeline][:: max(1, len(timeline) // 12)],
    )


async def test_managed_default_via_router(llama_assets, free_port, gone):
    """The embedded local default: no base URL -> the startup hook runs llama-server; chat and
    embed through the Router; closing the Router stops the child."""
    env = {
        "INFERENCE_PROVIDER": "llamacpp",
        "INFERENCE_LLAMACPP_PORT": str(free_port),
        "INFERENCE_LLAMACPP_THREADS": "1",
        "HEALTH_CHECK_INTERVAL": "60",
    }
    router = Router.from_env(env, env_file=None)
    t0 = time.monotonic()
    async with router:
        started = time.monotonic() - t0
        server = inference_llamacpp.plugin.managed_server("llamacpp")
        assert server is not None
        assert server.alive()
        pid = server.pid
        trace = RequestTrace()
        reply = await router.chat(chat(), trace=trace)
        assert isinstance(reply, ChatResponse)
        assert trace.backend == "llamacpp"
        assert reply.model == "gemma-3-270m"
        vectors = await router.embed({"input": ["a", "b"]})
        assert len(vectors.data) == 2
        health = await router.health(refresh=True)
        assert health["llamacpp"]["state"] == "ready"
        assert f"pid {pid}" in health["llamacpp"]["detail"]
        assert server.ready_after < 10, (
            f"later starts must be ready within 10 s: {server.ready_after}"
        )
    print(
        f"router start (provision cached + spawn + ready): {started:.2f}s; "
        f"spawn->ready {server.ready_after:.2f}s"
    )
    for _ in range(100):  # the shutdown hook waited for it; allow the reaper a moment
        if gone(pid):
            break
        await asyncio.sleep(0.05)
    assert gone(pid), "the managed llama-server outlived the router"
    assert inference_llamacpp.plugin.managed_server("llamacpp") is None


async def test_managed_other_gguf_path(plugin, llama_assets, free_port, tmp_path, http, gone):
    """Any GGUF works the same way: alias from the file name, the GGUF's own chat template."""
    other = tmp_path / "my-other-model.gguf"
    other.symlink_to(llama_assets["model_path"])
    config = managed_config(llama_assets, free_port, model_path=str(other))
    ready = await plugin.startup(config=config, http=http)
    server = plugin.managed_server("llamacpp")
    try:
        assert ready.model == "my-other-model"
        assert "--chat-template-file" not in server.spec.argv(server.port)
        (model,) = await plugin.list_models(config=ready, http=http)
        assert model.id == "my-other-model"
        result = await plugin.complete(
            request=CompletionRequest(prompt="Hello", max_tokens=2), config=ready, http=http
        )
        assert result.model == "my-other-model"
    finally:
        await plugin.shutdown(config=config)
    assert gone(server.pid) or server.process.poll() is not None


async def test_managed_child_killed_is_restarted(plugin, llama_assets, free_port, http):
    config = managed_config(llama_assets, free_port)
    ready = await plugin.startup(config=config, http=http)
    server = plugin.managed_server("llamacpp")
    try:
        first = server.pid
        os.kill(first, signal.SIGKILL)
        server.process.wait(5)
        health = await plugin.health(config=ready, http=http)
        assert health.state == "down"
        assert "restarting" in health.detail
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = await plugin.health(config=ready, http=http)
            if health.state == "ready":
                break
            await asyncio.sleep(0.1)
        assert health.state == "ready"
        assert server.pid != first
        result = await plugin.chat(request=chat(max_tokens=2), config=ready, http=http)
        assert result.choices
    finally:
        await plugin.shutdown(config=config)


KILLED_PARENT = """
import asyncio, sys
import inference_llamacpp
from inference_core import Router

async def main():
    env = {"INFERENCE_PROVIDER": "llamacpp", "INFERENCE_LLAMACPP_PORT": sys.argv[1],
           "INFERENCE_LLAMACPP_THREADS": "1"}
    async with Router.from_env(env, env_file=None):
        print(inference_llamacpp.plugin.managed_server().pid, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_no_orphan_when_the_gateway_is_sigkilled(llama_assets, free_port, tmp_path, gone):
    """No shutdown hook, no atexit: PR_SET_PDEATHSIG must take the real llama-server down."""
    import subprocess
    import sys

    script = tmp_path / "gateway.py"
    script.write_text(KILLED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(free_port)], stdout=subprocess.PIPE)
    try:
        child = int(parent.stdout.readline())
        assert not gone(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while not gone(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gone(child), f"llama-server {child} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
