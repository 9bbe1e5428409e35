"""Fixtures for the tests against REAL servers (llama.cpp ``llama-server``, vLLM CPU).

Peers are started outside the tests (``scripts/peers/*.sh start``, 50-80 s for each vLLM
server) and named by environment variables:

* ``INFERENCE_TEST_LLAMACPP_URL``: a llama-server started by ``scripts/peers/llamacpp.sh``
  (``--embeddings --pooling mean``, 4 slots of 2048 tokens). Its presence also says that the
  llama.cpp assets (binary, Gemma GGUF) are provisioned, so the tests that start their own
  managed llama-server run too;
* ``INFERENCE_TEST_VLLM_CHAT_URL``, ``INFERENCE_TEST_VLLM_EMBED_URL``: ``scripts/peers/vllm.sh``
  servers (``chat``: gemma3-270m, max_model_len 512; ``embed``: all-MiniLM-L6-v2).

A missing variable skips the test locally; with ``INFERENCE_REQUIRE_PEERS=1`` (CI) it FAILS it,
so that a skip never counts as a pass.  A variable that is set but names a server that does not
answer fails the test in both cases.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from inference_core.http import create_client
from inference_core.testing import peer_url

#: ports the tests may use for servers they start themselves (peers use 28000-28299)
OWN_PORTS = range(28600, 28999)


def _peer_url(var: str, how: str) -> str:
    return peer_url(var, how=how, probe="/health")


@pytest.fixture(scope="session")
def llamacpp_url() -> str:
    return _peer_url("INFERENCE_TEST_LLAMACPP_URL", "bash scripts/peers/llamacpp.sh start PORT")


@pytest.fixture(scope="session")
def vllm_chat_url() -> str:
    return _peer_url("INFERENCE_TEST_VLLM_CHAT_URL", "bash scripts/peers/vllm.sh start PORT chat")


@pytest.fixture(scope="session")
def vllm_embed_url() -> str:
    return _peer_url("INFERENCE_TEST_VLLM_EMBED_URL", "bash scripts/peers/vllm.sh start PORT embed")


@pytest.fixture(scope="session")
def llama_assets(llamacpp_url: str) -> dict[str, Path]:
    """The provisioned ``llama-server`` binary, default GGUF and chat template (cached)."""
    from inference_llamacpp import provision

    def quiet(message: str) -> None:
        pass

    return {
        "server_bin": provision.ensure_llama_server(progress=quiet),
        "model_path": provision.ensure_default_model(progress=quiet),
        "chat_template": provision.ensure_chat_template(),
    }


def own_port() -> int:
    """A free port in 28600-28998 for a server a test starts itself."""
    for port in OWN_PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 28600-28998")


@pytest.fixture
def free_port() -> int:
    return own_port()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The pooled client core would hand to the hooks."""
    async with create_client() as client:
        yield client


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def gone():
    """``gone(pid)``: True once ``pid`` is not a live process (a zombie counts as gone)."""
    return _gone
