"""The Anthropic and Responses protocols end to end against REAL servers: the official
``anthropic`` and ``openai`` SDKs -> a real uvicorn gateway -> the installed plugin ->
llama.cpp ``llama-server`` / vLLM CPU.

Peers come from ``INFERENCE_TEST_LLAMACPP_URL`` and ``INFERENCE_TEST_VLLM_CHAT_URL``
(``scripts/peers/*.sh start``); unset: skipped locally, FAILED under
``INFERENCE_REQUIRE_PEERS=1`` (CI).  The tool round trip starts its own llama-server (same
script, a tool-aware ChatML template: the peer's Gemma template refuses ``tool`` messages,
which is checked too).  The model is a base Gemma 270M: replies are junk, so these tests
check structure, counts and event order, never the text, and send a small ``max_tokens``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from inference_core.protocols.validate import (
    check_message,
    check_messages_stream,
    check_response,
    check_responses_stream,
)

from .conftest import peer_url

KEY = "sk-gateway-protocols-real"
ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "Say hi."}]
PEERS = {
    "llamacpp": ("INFERENCE_TEST_LLAMACPP_URL", "bash scripts/peers/llamacpp.sh start PORT"),
    "vllm": ("INFERENCE_TEST_VLLM_CHAT_URL", "bash scripts/peers/vllm.sh start PORT chat"),
}


def _gateway(serve_gateway: Any, plugin: str, url: str) -> Any:
    env = {
        "INFERENCE_PROVIDER": plugin,
        f"INFERENCE_{plugin.upper()}_BASE_URL": url,
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    return serve_gateway(env, api_keys=KEY)


@pytest.fixture(
    params=[
        pytest.param("llamacpp", marks=pytest.mark.llamacpp),
        pytest.param("vllm", marks=pytest.mark.vllm),
    ]
)
def real(request: pytest.FixtureRequest, serve_gateway: Any) -> tuple[Any, str]:
    var, how = PEERS[request.param]
    return _gateway(serve_gateway, request.param, peer_url(var, how)), request.param


def claude(gw: Any, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.url, api_key=kw.pop("api_key", KEY), max_retries=0, timeout=120
    )


def oai(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0, timeout=120)


# ---------------------------------------------------------------------------------- Messages


def test_messages_create_and_count_tokens(real: tuple[Any, str]) -> None:
    gw, backend = real
    with claude(gw) as client:
        count = client.messages.count_tokens(model="default", messages=USER)
        raw = client.messages.with_raw_response.create(
            model="default", max_tokens=8, messages=USER, extra_body={"temperature": 0}
        )
        message = raw.parse()
    assert raw.headers["x-inference-backend"] == backend
    check_message(message.model_dump())
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.output_tokens > 0
    # the prompt's size in the backend's own tokenizer and template, cached part included
    prompt = message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
    assert count.input_tokens == prompt


def test_messages_stream_every_event(real: tuple[Any, str]) -> None:
    gw, _ = real
    r = httpx.post(
        gw.url + "/v1/messages",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        json={"model": "default", "max_tokens": 8, "messages": USER, "stream": True,
              "temperature": 0},
        timeout=120,
    )  # fmt: skip
    assert r.status_code == 200
    events = check_messages_stream(r.content)
    assert events[-1]["type"] == "message_stop"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    with (
        claude(gw) as client,
        client.messages.stream(
            model="default", max_tokens=8, messages=USER, extra_body={"temperature": 0}
        ) as stream,
    ):
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    assert isinstance(text, str)


def test_stop_sequence_found_in_a_real_answer(real: tuple[Any, str]) -> None:
    gw, _ = real
    stops = [" ", "e", "a", "o", "i", "\n", "."]
    with claude(gw) as client:
        message = client.messages.create(
            model="default", max_tokens=32, messages=USER, stop_sequences=stops,
            extra_body={"temperature": 0},
        )  # fmt: skip
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence in stops
    assert message.usage.input_tokens > 0
    text = "".join(b.text for b in message.content if b.type == "text")
    assert not any(s in text for s in stops)


def test_messages_error_classes(real: tuple[Any, str]) -> None:
    gw, _ = real
    with claude(gw, api_key="sk-wrong") as client, pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="default", max_tokens=8, messages=USER)
    with claude(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.create(model="default", max_tokens=0, messages=USER)
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model="no-such-model-anywhere", max_tokens=8, messages=USER)
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# --------------------------------------------------------------------------------- Responses


def test_responses_plain_stream_and_previous_response_id(real: tuple[Any, str]) -> None:
    gw, backend = real
    with oai(gw) as client:
        raw = client.responses.with_raw_response.create(
            model="default", input="Say hi.", max_output_tokens=8, temperature=0
        )
        first = raw.parse()
        second = client.responses.create(
            model="default", input="Again.", previous_response_id=first.id, max_output_tokens=8
        )
    assert raw.headers["x-inference-backend"] == backend
    check_response(first.model_dump())
    assert first.usage is not None
    assert second.usage is not None
    # the whole history went to the backend: the first prompt and answer are in the second
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens - 2
    if first.status == "incomplete":
        assert first.incomplete_details is not None
        assert first.incomplete_details.reason == "max_output_tokens"
    r = httpx.post(
        gw.base_url + "/responses",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "default", "input": "Say hi.", "stream": True, "max_output_tokens": 4,
              "temperature": 0},
        timeout=120,
    )  # fmt: skip
    events = check_responses_stream(r.content)
    final = events[-1]["response"]
    if final["usage"]["output_tokens"] >= 4:  # cut by the limit (the base model rambles)
        assert events[-1]["type"] == "response.incomplete"
        assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    else:
        assert events[-1]["type"] == "response.completed"
    with (
        oai(gw) as client,
        client.responses.stream(model="default", input="Say hi.", max_output_tokens=4) as stream,
    ):
        kinds = [e.type for e in stream]
    assert kinds[:2] == ["response.created", "response.in_progress"]


# ------------------------------------------------------------------------------ tool results


@pytest.fixture
def tools_llama(serve_gateway: Any) -> Iterator[Any]:
    """A llama-server of our own with a tool-aware ChatML template (same model)."""
    peer_url(*PEERS["llamacpp"])  # the assets are provisioned when the peer is
    from tests.integration.conftest import own_port

    port = own_port()
    script = str(ROOT / "scripts" / "peers" / "llamacpp.sh")
    template = str(Path(__file__).parent / "data" / "tools-chatml.jinja")
    subprocess.run(
        ["bash", script, "start", str(port), "--jinja", "--chat-template-file", template],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        yield _gateway(serve_gateway, "llamacpp", f"http://127.0.0.1:{port}")
    finally:
        subprocess.run(["bash", script, "stop", str(port)], capture_output=True, timeout=60)


def _tool_turns(result: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name":
                                           "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                      "content": result}]},
    ]  # fmt: skip


TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.mark.llamacpp
def test_tool_result_round_trip_reaches_the_real_prompt(tools_llama: Any) -> None:
    gw = tools_llama
    with claude(gw) as client:
        short = client.messages.create(
            model="default", max_tokens=4, tools=TOOLS, messages=_tool_turns("18 C")
        )
        long = client.messages.create(
            model="default", max_tokens=4, tools=TOOLS,
            messages=_tool_turns("18 C, sunny, light wind from the west, no rain until Friday"),
        )  # fmt: skip
    with oai(gw) as client:
        resp = client.responses.create(
            model="default", max_output_tokens=4,
            tools=[{"type": "function", "name": "get_weather",
                    "parameters": TOOLS[0]["input_schema"]}],
            input=[{"role": "user", "content": "Weather in Paris?"},
                   {"type": "function_call", "call_id": "call_01", "name": "get_weather",
                    "arguments": '{"city": "Paris"}'},
                   {"type": "function_call_output", "call_id": "call_01", "output": "18 C"}],
        )  # fmt: skip
    check_message(short.model_dump())
    check_response(resp.model_dump())
    # the tool result is in the prompt the backend tokenized (longer result, more tokens)
    assert long.usage.input_tokens + (long.usage.cache_read_input_tokens or 0) > (
        short.usage.input_tokens + (short.usage.cache_read_input_tokens or 0) + 5
    )
    assert resp.usage is not None
    assert resp.usage.input_tokens > 20


@pytest.mark.llamacpp
def test_a_template_without_tool_turns_is_a_clean_400(serve_gateway: Any) -> None:
    # the peer's Gemma template raises on a `tool` message: the client gets Anthropic's 400
    gw = _gateway(serve_gateway, "llamacpp", peer_url(*PEERS["llamacpp"]))
    with claude(gw) as client, pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="default", max_tokens=4, tools=TOOLS,
                               messages=_tool_turns("18 C"))  # fmt: skip
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
