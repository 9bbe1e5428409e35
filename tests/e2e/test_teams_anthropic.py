"""Keys, limits and usage on the Anthropic Messages route, with the official ``anthropic`` SDK
(it sends its key as ``x-api-key``) against a real gateway server over the fake OpenAI server:
a store key works there, its 403/429/401 come as the SDK's error classes, and its tokens
(streams included: the gateway asks the backend for usage) are counted as on chat."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from inference_core.gateway.keys import FileKeyStore, make_record
from tests.fakes import FakeOpenAIServer

SECRET = "sk-inf-anthropic-route-key-0001"
ADMIN = "admin-anthropic-e2e"
MODEL = "gpt-4o-mini"
USER: Any = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-up", models=[MODEL]) as srv:
        yield srv


@pytest.fixture
def gw(fake: FakeOpenAIServer, serve_gateway: Any, tmp_path: Path, monkeypatch) -> Any:
    keys = tmp_path / "keys.toml"
    record = make_record("claude-user", SECRET, models=["gpt-4o*"], rpm=4)
    asyncio.run(FileKeyStore(keys).create(record))
    monkeypatch.setenv("INFERENCE_KEYS_FILE", str(keys))
    monkeypatch.setenv("INFERENCE_ADMIN_KEYS", ADMIN)
    return serve_gateway(
        {
            "INFERENCE_PROVIDER": "openai",
            "OPENAI_API_BASE": fake.base_url,
            "OPENAI_API_KEY": "sk-up",
            "HEALTH_CHECK_INTERVAL": "3600",
        }
    )


def test_messages_with_a_store_key_limits_and_usage(gw: Any, fake: FakeOpenAIServer) -> None:
    client = anthropic.Anthropic(api_key=SECRET, base_url=gw.url, max_retries=0)
    msg = client.messages.create(model=MODEL, max_tokens=16, messages=USER)
    assert msg.content[0].text
    with client.messages.stream(model=MODEL, max_tokens=16, messages=USER) as stream:
        text = "".join(stream.text_stream)
    assert text
    streamed = [r.json for r in fake.requests if r.path == "/v1/chat/completions"][-1]
    assert streamed["stream_options"]["include_usage"] is True
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="claude-other", max_tokens=16, messages=USER)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="sk-inf-nope", base_url=gw.url, max_retries=0).messages.create(
            model=MODEL, max_tokens=16, messages=USER
        )
    client.messages.create(model=MODEL, max_tokens=16, messages=USER)
    client.messages.create(model=MODEL, max_tokens=16, messages=USER)  # the 4th of rpm 4
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=MODEL, max_tokens=16, messages=USER)
    assert "rpm" in str(info.value)
    assert int(info.value.response.headers["retry-after"]) >= 1
    usage = httpx.get(gw.url + "/v1/admin/usage", headers={"x-api-key": ADMIN}).json()
    row = usage["keys"]["claude-user"]
    assert row["requests"] == 4
    assert row["prompt_tokens"] > 0
    assert row["completion_tokens"] > 0
