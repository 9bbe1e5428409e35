"""Fixtures: the fake Ollama server (``tests/fakes``), core's pooled client, a config factory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:  # for `tests.fakes` (pytest runs in importlib mode)
    sys.path.insert(0, _ROOT)

from inference_core.http import create_client  # noqa: E402
from inference_core.testing import make_config  # noqa: E402
from tests.fakes import FakeOllamaServer  # noqa: E402


@pytest.fixture(scope="session")
def ollama_server():
    with FakeOllamaServer() as srv:
        yield srv


@pytest.fixture
def server(ollama_server):
    ollama_server.reset()
    return ollama_server


@pytest.fixture
async def http():
    client = create_client()
    yield client
    await client.aclose()


@pytest.fixture
def config(server):
    def build(**overrides):
        kwargs = {"name": "ollama", "base_url": server.url, "model": "llama3.2:1b"}
        kwargs.update(overrides)
        return make_config(**kwargs)

    return build
