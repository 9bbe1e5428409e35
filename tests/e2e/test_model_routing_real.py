"""Model routing end to end against REAL servers, with the official ``openai`` SDK as client.

The gateway fronts three backends: a llama.cpp ``llama-server`` this test owns (so it can kill
it), the vLLM chat peer (``gemma3-270m``) and the vLLM embeddings peer (``all-MiniLM-L6-v2``).
Each model name reaches the server that has it; ``backend/model`` selects; an unknown name is a
``NotFoundError`` that reaches no server; and once the llama.cpp server is killed, the model
fallback declared for its model (``INFERENCE_MODEL_FALLBACKS``) takes over, streamed and not,
saying which backend and model answered.  Replies are junk (a base 270M model): structure only.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .conftest import peer_url

pytestmark = [pytest.mark.llamacpp, pytest.mark.vllm]

LLAMA_MODEL = "gemma-llamacpp"  # the alias our llama-server serves its Gemma under
VLLM_MODEL = "gemma3-270m"
EMBED_MODEL = "all-MiniLM-L6-v2"
MSG = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def llama_server(tmp_path: Any) -> Iterator[Any]:
    """A llama-server of our own (the peers' assets), killed by the test or stopped after."""
    peer_url("INFERENCE_TEST_LLAMACPP_URL", "bash scripts/peers/llamacpp.sh start PORT")
    from inference_core.http import create_client
    from inference_llamacpp import provision
    from inference_llamacpp.managed import ManagedServer, ServerSpec

    spec = ServerSpec(
        binary=provision.ensure_llama_server(progress=lambda _m: None),
        model=provision.ensure_default_model(progress=lambda _m: None),
        alias=LLAMA_MODEL,
        threads=1,
        chat_template=provision.ensure_chat_template(),
    )
    server = ManagedServer(spec, tmp_path)

    async def start() -> None:
        async with create_client() as http:
            await server.start(http, timeout=90)

    asyncio.run(start())
    try:
        yield server
    finally:
        server.stop()


def _sdk(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=120)


def _served(raw: Any) -> tuple[str, str]:
    return raw.headers["x-inference-backend"], raw.headers["x-inference-model"]


def test_every_model_by_name_backend_slash_model_404_and_declared_fallback(
    serve_gateway: Any, llama_server: Any
) -> None:
    chat_url = peer_url(
        "INFERENCE_TEST_VLLM_CHAT_URL", "bash scripts/peers/vllm.sh start PORT chat"
    )
    embed_url = peer_url(
        "INFERENCE_TEST_VLLM_EMBED_URL", "bash scripts/peers/vllm.sh start PORT embed"
    )
    env = {
        "INFERENCE_PROVIDER": "llamacpp",
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "vllm,vllm_embed",
        "INFERENCE_LLAMACPP_BASE_URL": llama_server.url + "/v1",  # the SDK-style form works too
        "INFERENCE_VLLM_BASE_URL": chat_url,
        "INFERENCE_VLLM_EMBED_PLUGIN": "vllm",
        "INFERENCE_VLLM_EMBED_BASE_URL": embed_url,
        "INFERENCE_MODEL_FALLBACKS": f"{LLAMA_MODEL}=vllm/{VLLM_MODEL}",
        "INFERENCE_MAX_RETRIES": "0",
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    gw = serve_gateway(env)
    with _sdk(gw) as client:
        # the catalog: each model once, on the backend that serves it
        listed = {(m.id, m.owned_by) for m in client.models.list().data}
        assert {
            (LLAMA_MODEL, "llamacpp"),
            (VLLM_MODEL, "vllm"),
            (EMBED_MODEL, "vllm_embed"),
        } <= listed
        assert client.models.retrieve(EMBED_MODEL).owned_by == "vllm_embed"

        # each name reaches its server (the primary is llama.cpp, yet vLLM's model goes to vLLM)
        for model, backend in ((VLLM_MODEL, "vllm"), (LLAMA_MODEL, "llamacpp")):
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=MSG, max_tokens=4, temperature=0
            )
            assert _served(raw) == (backend, model)
            assert raw.parse().choices[0].finish_reason in ("stop", "length")
        emb = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=["a", "b c"])
        assert _served(emb) == ("vllm_embed", EMBED_MODEL)
        assert [len(d.embedding) for d in emb.parse().data] == [384, 384]

        # backend/model selects that backend
        raw = client.chat.completions.with_raw_response.create(
            model=f"vllm/{VLLM_MODEL}", messages=MSG, max_tokens=2
        )
        assert _served(raw) == ("vllm", VLLM_MODEL)

        # a name nobody serves: NotFoundError, with close names, and no server asked
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="gemma3-27b", messages=MSG, max_tokens=2)
        assert info.value.code == "model_not_found"
        assert VLLM_MODEL in info.value.message

        # kill llama.cpp: its model's declared fallback (vLLM's Gemma) answers, streamed or not
        os.kill(llama_server.pid, signal.SIGKILL)
        raw = client.chat.completions.with_raw_response.create(
            model=LLAMA_MODEL, messages=MSG, max_tokens=4
        )
        assert _served(raw) == ("vllm", VLLM_MODEL)
        assert raw.parse().model == VLLM_MODEL  # the body says which model answered, too
        with client.chat.completions.with_streaming_response.create(
            model=LLAMA_MODEL, messages=MSG, max_tokens=4, stream=True
        ) as response:
            assert _served(response) == ("vllm", VLLM_MODEL)
            chunks = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert chunks[-1] == "data: [DONE]"

    health = httpx.get(gw.url + "/v1/health/inference", timeout=10).json()
    assert health["backends"]["vllm"]["models_known"] is True
    assert health["primary"]["type"] == "llamacpp"
