"""Fixtures: the fake OpenAI server (``tests/fakes``), core's pooled client, a config factory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:  # for `tests.fakes` (pytest runs in importlib mode)
    sys.path.insert(0, _ROOT)

from inference_core.http import create_client  # noqa: E402
from inference_core.testing import make_config  # noqa: E402
from tests.fakes import FakeOpenAIServer  # noqa: E402

KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="session")
def openai_server():
    with FakeOpenAIServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def server(openai_server):
    openai_server.reset()
    return openai_server


@pytest.fixture
async def http():
    client = create_client()
    yield client
    await client.aclose()


@pytest.fixture(params=["raw", "sdk"])
def client_kind(request):
    return request.param


@pytest.fixture
def config(server, client_kind):
    """A config for the fake server, in both client modes."""

    def build(**overrides):
        kwargs = {
            "name": "openai",
            "base_url": server.base_url,
            "model": "gpt-4o-mini",
            "api_key": KEY,
            "options": {"client": client_kind},
        }
        options = overrides.pop("options", {})
        kwargs.update(overrides)
        kwargs["options"] = {**kwargs["options"], **options}
        return make_config(**kwargs)

    return build
