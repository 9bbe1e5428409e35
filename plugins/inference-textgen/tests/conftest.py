"""Fixtures: the fake text-generation-webui server (``tests/fakes``), core's client, configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:  # for `tests.fakes` (pytest runs in importlib mode)
    sys.path.insert(0, _ROOT)

from inference_core.http import create_client  # noqa: E402
from inference_core.testing import make_config  # noqa: E402
from tests.fakes import FakeTextgenServer  # noqa: E402

KEY = "tg-api-key"
ADMIN = "tg-admin-key"
LOADED = "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"
OTHER = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"


@pytest.fixture(scope="session")
def textgen_server():
    with FakeTextgenServer(api_key=KEY, admin_key=ADMIN) as srv:
        yield srv


@pytest.fixture
def server(textgen_server):
    textgen_server.reset()
    return textgen_server


@pytest.fixture
def plugin():
    from inference_textgen import TextgenPlugin

    return TextgenPlugin()  # fresh caches per test


@pytest.fixture
async def http():
    client = create_client()
    yield client
    await client.aclose()


@pytest.fixture
def config(server):
    def build(**overrides):
        kwargs = {"name": "textgen", "base_url": server.url, "model": None, "api_key": KEY}
        options = {"admin_key": ADMIN, **overrides.pop("options", {})}
        kwargs.update(overrides)
        kwargs["options"] = options
        return make_config(**kwargs)

    return build
