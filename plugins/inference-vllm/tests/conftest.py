"""A fake vLLM server for unit tests: an ``httpx.MockTransport`` that serves response bodies
recorded from the real vLLM 0.32.0 CPU server (``tests/data``, taken from
``/work/shared/peers/vllm/transcripts``) and records what the plugin sent
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
BASE = "http://vllm.test:8000"


@pytest.fixture
def fake() -> ReplayUpstream:
    fake = ReplayUpstream(DATA, not_found=b'{"detail":"Not Found"}')
    fake.routes.update(
        {
            ("GET", "/health"): (200, b"", "application/json"),
            ("GET", "/v1/models"): fake.json_reply("models.json"),
            ("GET", "/metrics"): (200, fake.data("metrics.txt"), "text/plain; version=1.0.0"),
            ("POST", "/v1/chat/completions"): fake.json_reply("chat.json"),
            ("POST", "/v1/completions"): fake.json_reply("completions.json"),
        }
    )
    return fake


@pytest.fixture
async def http(fake: ReplayUpstream) -> AsyncIterator[httpx.AsyncClient]:
    client = create_client(transport=httpx.MockTransport(fake.handler))
    yield client
    await client.aclose()


@pytest.fixture
def config() -> BackendConfig:
    return BackendConfig(name="vllm", base_urls=(BASE,), model="gemma3-270m")
