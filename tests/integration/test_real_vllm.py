"""inference-vllm against REAL vLLM 0.32.0 CPU servers (chat: gemma3-270m, max_model_len 512;
embed: all-MiniLM-L6-v2). Structure only, never generated text; ``max_tokens`` <= 8."""

from __future__ import annotations

import base64

import pytest

import inference_vllm
from inference_core import (
    BackendConfig,
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

pytestmark = pytest.mark.vllm


def chat(**kw) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "Name three colors."}])
    kw.setdefault("max_tokens", 4)
    return ChatRequest(temperature=0, **kw)


@pytest.fixture
def plugin() -> inference_vllm.VLLMPlugin:
    return inference_vllm.VLLMPlugin()


@pytest.fixture
def config(vllm_chat_url: str) -> BackendConfig:
    """No model configured: "default" resolves to what the server serves."""
    return BackendConfig(name="vllm", base_urls=(vllm_chat_url,))


@pytest.fixture
def embed_config(vllm_embed_url: str) -> BackendConfig:
    return BackendConfig(name="vllm", base_urls=(vllm_embed_url,))


async def test_chat_default_model_resolved(plugin, config, http):
    result = await plugin.chat(request=chat(), config=config, http=http)
    assert isinstance(result, ChatResponse)
    assert result.model == "gemma3-270m"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].finish_reason in ("length", "stop")
    assert 1 <= result.usage.completion_tokens <= 4
    assert result.system_fingerprint.startswith("vllm-")


async def test_chat_configured_model_and_alias(plugin, vllm_chat_url, http):
    cfg = BackendConfig(
        name="vllm",
        base_urls=(vllm_chat_url,),
        model="gemma3-270m",
        aliases={"gpt-4o-mini": "gemma3-270m"},
    )
    result = await plugin.chat(request=chat(model="gpt-4o-mini"), config=cfg, http=http)
    assert result.model == "gemma3-270m"  # the client's alias never reaches vLLM
    result = await plugin.chat(request=chat(model="default"), config=cfg, http=http)
    assert result.model == "gemma3-270m"  # the configured model is the default


async def test_stream_with_usage(plugin, config, http):
    request = chat(stream=True, stream_options={"include_usage": True}, max_tokens=6)
    stream = await plugin.chat(request=request, config=config, http=http)
    chunks = [c async for c in stream]
    assert all(isinstance(c, ChatChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 6
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"


async def test_completions(plugin, config, http):
    result = await plugin.complete(
        request=CompletionRequest(prompt="The capital of France is", max_tokens=4, temperature=0),
        config=config,
        http=http,
    )
    assert isinstance(result, CompletionResponse)
    assert result.usage.completion_tokens == 4
    stream = await plugin.complete(
        request=CompletionRequest(
            prompt="1, 2, 3,", max_tokens=4, stream=True, stream_options={"include_usage": True}
        ),
        config=config,
        http=http,
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage.completion_tokens == 4


async def test_extra_sampling_and_structured_output_pass_through(plugin, config, http):
    request = chat(
        top_k=20,
        min_p=0.05,
        repetition_penalty=1.1,
        structured_outputs={"choice": ["red", "blue"]},
        max_tokens=8,
    )
    result = await plugin.chat(request=request, config=config, http=http)
    # the constraint reached vLLM: the answer is one of the allowed strings
    assert result.choices[0].message.content in ("red", "blue")


async def test_embeddings(plugin, embed_config, http):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "A girl."]
    result = await plugin.embed(
        request=EmbeddingRequest(input=texts), config=embed_config, http=http
    )
    assert result.model == "all-MiniLM-L6-v2"
    assert [d.index for d in result.data] == [0, 1, 2]
    assert {len(d.embedding) for d in result.data} == {384}
    encoded = await plugin.embed(
        request=EmbeddingRequest(input="hi", encoding_format="base64"),
        config=embed_config,
        http=http,
    )
    assert len(base64.b64decode(encoded.data[0].embedding)) == 384 * 4


async def test_embeddings_via_embed_base_url_option(plugin, vllm_chat_url, vllm_embed_url, http):
    cfg = BackendConfig(
        name="vllm",
        base_urls=(vllm_chat_url,),
        model="gemma3-270m",
        options={"embed_base_url": vllm_embed_url},
    )
    result = await plugin.embed(request=EmbeddingRequest(input=["a", "b"]), config=cfg, http=http)
    assert len(result.data) == 2
    assert result.model == "all-MiniLM-L6-v2"


async def test_embeddings_on_chat_server_is_capability_not_supported(plugin, config, http):
    with pytest.raises(CapabilityNotSupported, match="pooling"):
        await plugin.embed(request=EmbeddingRequest(input="hi"), config=config, http=http)


async def test_unknown_model_is_model_not_found(plugin, config, http):
    with pytest.raises(ModelNotFound) as info:
        await plugin.chat(request=chat(model="no-such-model"), config=config, http=http)
    assert info.value.param == "model"
    assert not info.value.fallback


async def test_prompt_too_long_is_context_length(plugin, config, http):
    request = chat(messages=[{"role": "user", "content": "word " * 600}])
    with pytest.raises(ContextLengthExceeded) as info:
        await plugin.chat(request=request, config=config, http=http)
    assert info.value.param == "input_tokens"


async def test_max_tokens_over_model_len_is_context_length(plugin, config, http):
    with pytest.raises(ContextLengthExceeded) as info:
        await plugin.chat(request=chat(max_tokens=100_000), config=config, http=http)
    assert info.value.param == "max_tokens"


async def test_models_and_startup_context_length(plugin, config, embed_config, http):
    (model,) = await plugin.list_models(config=config, http=http)
    assert model.id == "gemma3-270m"
    assert model.context_length == 512
    started = await plugin.startup(config=config, http=http)
    assert started.options["context_length"] == "512"
    (emb,) = await plugin.list_models(config=embed_config, http=http)
    assert emb.id == "all-MiniLM-L6-v2"
    assert emb.context_length == 256


async def test_health(plugin, config, http):
    health = await plugin.health(config=config, http=http)
    assert health.state == "ready"
    assert health.models == ["gemma3-270m"]
    deep = config.model_copy(update={"options": {"health_deep": "true"}})
    health = await plugin.health(config=deep, http=http)
    assert health.state == "ready"
    assert "running" in health.detail
    assert "kv cache" in health.detail


async def test_health_of_a_closed_port_is_down(plugin, http, free_port):
    cfg = BackendConfig(name="vllm", base_urls=(f"http://127.0.0.1:{free_port}",))
    health = await plugin.health(config=cfg, http=http)
    assert health.state == "down"


def _listening_pid(port: int) -> int | None:
    """The PID of the process listening on 127.0.0.1:``port`` (from /proc, Linux)."""
    import os
    from pathlib import Path

    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def _descendants(pid: int) -> dict[int, str]:
    """pid -> comm of every descendant of ``pid``."""
    from pathlib import Path

    parent: dict[int, int] = {}
    comm: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent[int(proc.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        comm[int(proc.name)] = name
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found[child] = comm[child]
                frontier.append(child)
    return found


async def test_deep_health_catches_a_hung_engine(plugin, vllm_chat_url, http):
    """SIGSTOP vLLM's model worker mid-generation: /health keeps answering 200 (the known
    limitation); the deep check sees requests running without token progress and says down."""
    import asyncio
    import os
    import signal
    from urllib.parse import urlsplit

    api = _listening_pid(urlsplit(vllm_chat_url).port)
    if api is None:
        pytest.skip("the vLLM server's process is not visible from here (another host/namespace)")
    workers = [p for p, name in _descendants(api).items() if name.startswith("VLLM::Worker")]
    assert workers, f"no VLLM::Worker process under the API server {api}"
    cfg = BackendConfig(
        name="vllm",
        base_urls=(vllm_chat_url,),
        model="gemma3-270m",
        options={"health_deep": "true", "health_stall_seconds": "2", "health_timeout": "3"},
    )
    assert (await plugin.health(config=cfg, http=http)).state == "ready"
    request = chat(max_tokens=200, stream=True, ignore_eos=True)
    stream = await plugin.chat(request=request, config=cfg, http=http)
    await stream.__anext__()
    await stream.__anext__()
    states = []
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(4):
            plain = await http.get(vllm_chat_url + "/health", timeout=3)
            deep = await plugin.health(config=cfg, http=http)
            states.append((plain.status_code, deep.state, deep.detail))
            await asyncio.sleep(1.2)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        await stream.aclose()  # vLLM aborts the request when the client goes
    assert all(code == 200 for code, _, _ in states), states  # /health alone: fooled
    assert states[0][1] == "ready"
    assert states[-1][1] == "down", states
    assert "engine stalled" in states[-1][2]
    for _ in range(50):  # the engine resumes: ready again
        if (await plugin.health(config=cfg, http=http)).state == "ready":
            break
        await asyncio.sleep(0.2)
    assert (await plugin.health(config=cfg, http=http)).state == "ready"
