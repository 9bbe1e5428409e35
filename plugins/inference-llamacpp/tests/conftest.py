"""A fake llama-server for unit tests: an ``httpx.MockTransport`` that serves response bodies
recorded from the real llama-server b11434 (Gemma 3 270M) (``tests/data``, taken from
``/work/shared/peers/llamacpp/transcripts``) and records what the plugin sent
(``tests.fakes.replay.ReplayUpstream``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:  # for `tests.fakes` (pytest runs in importlib mode)
    sys.path.insert(0, _ROOT)

from inference_core import BackendConfig  # noqa: E402
from inference_core.http import create_client  # noqa: E402
from tests.fakes.replay import ReplayUpstream  # noqa: E402

DATA = Path(__file__).parent / "data"
BASE = "http://llama.test:8080"
NOT_FOUND = b'{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}'


@pytest.fixture
def fake() -> ReplayUpstream:
    fake = ReplayUpstream(DATA, not_found=NOT_FOUND)
    for method, path, name in (
        ("GET", "/health", "health_ok.json"),
        ("GET", "/props", "props.json"),
        ("GET", "/slots", "slots.json"),
        ("GET", "/v1/models", "models.json"),
        ("POST", "/v1/chat/completions", "chat.json"),
        ("POST", "/v1/completions", "completions.json"),
        ("POST", "/v1/embeddings", "embeddings_list.json"),
    ):
        fake.set(method, path, name)
    return fake


@pytest.fixture
async def http(fake: ReplayUpstream) -> AsyncIterator[httpx.AsyncClient]:
    client = create_client(transport=httpx.MockTransport(fake.handler))
    yield client
    await client.aclose()


@pytest.fixture
def config() -> BackendConfig:
    return BackendConfig(name="llamacpp", base_urls=(BASE,))
