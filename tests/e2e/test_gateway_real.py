"""The gateway end to end against REAL servers: the official ``openai`` SDK -> a real uvicorn
gateway -> the installed plugin -> llama.cpp ``llama-server`` / vLLM CPU.

Peers come from ``INFERENCE_TEST_LLAMACPP_URL``, ``INFERENCE_TEST_VLLM_CHAT_URL`` and
``INFERENCE_TEST_VLLM_EMBED_URL`` (``scripts/peers/*.sh start``).  Unset: skipped locally,
FAILED under ``INFERENCE_REQUIRE_PEERS=1`` (CI).  The model is a base Gemma 270M: replies are
junk, so these tests check structure, never text, and always send a small ``max_tokens``.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from .conftest import peer_url

GW_KEY = "sk-gateway-real"
MSG = [{"role": "user", "content": "Say hi."}]


def _gateway(serve_gateway: Any, plugin: str, url: str) -> Any:
    name = plugin.upper()
    env = {
        "INFERENCE_PROVIDER": plugin,
        f"INFERENCE_{name}_BASE_URL": url,
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    return serve_gateway(env, api_keys=GW_KEY)


def _sdk(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=GW_KEY, max_retries=0, timeout=120)


def _chat_and_stream(gw: Any, backend: str) -> None:
    with _sdk(gw) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="default", messages=MSG, max_tokens=8, temperature=0
        )
        completion = raw.parse()
        assert raw.headers["x-inference-backend"] == backend
        assert completion.object == "chat.completion"
        assert completion.choices[0].finish_reason in ("stop", "length")
        assert completion.usage is not None
        assert completion.usage.completion_tokens > 0

        chunks = list(
            client.chat.completions.create(
                model="default",
                messages=MSG,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)

    with httpx.Client(timeout=120) as http:  # the SSE itself ends with [DONE]
        r = http.post(
            gw.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {GW_KEY}"},
            json={"model": "default", "messages": MSG, "max_tokens": 4, "stream": True},
        )
    assert r.status_code == 200
    assert r.text.rstrip().endswith("data: [DONE]")


def _embeddings(gw: Any) -> None:
    with _sdk(gw) as client:
        floats = client.embeddings.create(model="default", input=["one", "two words"])
        b64 = client.embeddings.create(model="default", input="one", encoding_format="base64")
        models = client.models.list()
    assert [d.index for d in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) > 8
    assert isinstance(b64.data[0].embedding, str)
    assert models.data


def _health(gw: Any, backend: str) -> None:
    r = httpx.get(
        gw.url + "/v1/health/inference?refresh=true",
        headers={"authorization": f"Bearer {GW_KEY}"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json()["backends"][backend]["state"] == "ready"
    assert httpx.get(gw.url + "/ready", timeout=10).status_code == 200


@pytest.mark.llamacpp
def test_llamacpp_through_the_gateway(serve_gateway: Any) -> None:
    url = peer_url("INFERENCE_TEST_LLAMACPP_URL", "bash scripts/peers/llamacpp.sh start PORT")
    gw = _gateway(serve_gateway, "llamacpp", url)
    _health(gw, "llamacpp")
    _chat_and_stream(gw, "llamacpp")
    _embeddings(gw)  # the peer runs with --embeddings


@pytest.mark.llamacpp
def test_llamacpp_streams_back_to_back(serve_gateway: Any) -> None:
    """llama-server closes the connection after every stream: no request may fail for it."""
    url = peer_url("INFERENCE_TEST_LLAMACPP_URL", "bash scripts/peers/llamacpp.sh start PORT")
    gw = _gateway(serve_gateway, "llamacpp", url)
    with _sdk(gw) as client:
        for _ in range(4):
            chunks = list(
                client.chat.completions.create(
                    model="default", messages=MSG, max_tokens=3, stream=True
                )
            )
            assert chunks
            done = client.chat.completions.create(model="default", messages=MSG, max_tokens=3)
            assert done.choices


@pytest.mark.vllm
def test_vllm_chat_through_the_gateway(serve_gateway: Any) -> None:
    url = peer_url("INFERENCE_TEST_VLLM_CHAT_URL", "bash scripts/peers/vllm.sh start PORT chat")
    gw = _gateway(serve_gateway, "vllm", url)
    _health(gw, "vllm")
    _chat_and_stream(gw, "vllm")
    with _sdk(gw) as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=MSG, max_tokens=100000)


@pytest.mark.vllm
def test_vllm_embeddings_through_the_gateway(serve_gateway: Any) -> None:
    url = peer_url("INFERENCE_TEST_VLLM_EMBED_URL", "bash scripts/peers/vllm.sh start PORT embed")
    gw = _gateway(serve_gateway, "vllm", url)
    _embeddings(gw)
