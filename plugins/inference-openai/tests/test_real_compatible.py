"""The OpenAI plugin against REAL OpenAI-compatible servers (vLLM CPU and llama.cpp peers).

"Any OpenAI-compatible service by base URL alone": the peers are started outside the tests
(``scripts/peers/*.sh``) and named by ``INFERENCE_TEST_VLLM_CHAT_URL``,
``INFERENCE_TEST_VLLM_EMBED_URL`` and ``INFERENCE_TEST_LLAMACPP_URL``.  A missing variable skips
locally and FAILS under ``INFERENCE_REQUIRE_PEERS=1`` (CI).  The models are tiny base models:
only structure is checked, never the text, with small ``max_tokens``.
"""

from __future__ import annotations

import httpx
import pytest

import inference_openai
from inference_core import (
    ChatRequest,
    ContextLengthExceeded,
    EmbeddingRequest,
    ModelNotFound,
)
from inference_core.http import create_client
from inference_core.testing import make_config, peer_url

plugin = inference_openai.plugin
USER = [{"role": "user", "content": "Say hello"}]


def peer(var: str) -> str:
    return peer_url(var, probe="/health")


@pytest.fixture(params=["raw", "sdk"])
def client(request):
    return request.param


@pytest.fixture
async def http():
    async with create_client() as client:
        yield client


async def served_model(url: str) -> str:
    async with httpx.AsyncClient(trust_env=False) as c:
        return (await c.get(url + "/v1/models")).json()["data"][0]["id"]


@pytest.mark.vllm
async def test_vllm_as_an_openai_compatible_service(http, client):
    url = peer("INFERENCE_TEST_VLLM_CHAT_URL")
    model = await served_model(url)
    cfg = make_config("openai", base_url=url + "/v1", model=model, options={"client": client})

    r = await plugin.chat(request=ChatRequest(messages=USER, max_tokens=4), config=cfg, http=http)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 4
    assert r.model == model

    request = ChatRequest(
        messages=USER, max_tokens=4, stream=True, stream_options={"include_usage": True}, top_k=5
    )
    chunks = [c async for c in await plugin.chat(request=request, config=cfg, http=http)]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens <= 4

    with pytest.raises(ContextLengthExceeded):
        await plugin.chat(
            request=ChatRequest(messages=USER, max_tokens=4096), config=cfg, http=http
        )
    bad = make_config(
        "openai", base_url=url + "/v1", model="no-such-model", options={"client": client}
    )
    with pytest.raises(ModelNotFound):
        await plugin.chat(request=ChatRequest(messages=USER, max_tokens=2), config=bad, http=http)

    health = await plugin.health(config=cfg, http=http)
    assert health.state == "ready"
    assert model in health.models


@pytest.mark.vllm
async def test_vllm_embeddings(http, client):
    url = peer("INFERENCE_TEST_VLLM_EMBED_URL")
    model = await served_model(url)
    cfg = make_config("openai", base_url=url + "/v1", model=model, options={"client": client})
    for fmt in (None, "base64"):
        request = EmbeddingRequest(input=["one", "two", "three"], encoding_format=fmt)
        r = await plugin.embed(request=request, config=cfg, http=http)
        assert [d.index for d in r.data] == [0, 1, 2]
        assert r.usage.prompt_tokens > 0


@pytest.mark.llamacpp
async def test_llamacpp_as_an_openai_compatible_service(http, client):
    url = peer("INFERENCE_TEST_LLAMACPP_URL")
    cfg = make_config("openai", base_url=url + "/v1", model="any", options={"client": client})
    r = await plugin.chat(request=ChatRequest(messages=USER, max_tokens=4), config=cfg, http=http)
    assert r.choices
    if client == "raw":
        assert b'"timings"' in r.raw  # llama.cpp's extras relayed as they came
    request = ChatRequest(
        messages=USER, max_tokens=4, stream=True, stream_options={"include_usage": True}
    )
    for _ in range(3):  # llama.cpp closes the connection after each stream: reuse must work
        chunks = [c async for c in await plugin.chat(request=request, config=cfg, http=http)]
        assert chunks[-1].usage is not None
    models = await plugin.list_models(config=cfg, http=http)
    assert models
