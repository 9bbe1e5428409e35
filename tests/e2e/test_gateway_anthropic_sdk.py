"""The official ``anthropic`` SDK against a real gateway server (uvicorn, the ``inference serve``
options) over fake upstreams reached through the installed plugins: two OpenAI-compatible
fakes (chain ``openai`` -> ``backup``) and the Ollama fake.

Covers ``messages.create``, ``messages.stream`` (every event checked, on the wire too),
``count_tokens``, each error class the gateway produces, tool use with arguments arriving in
several chunks and the ``tool_result`` round trip, stop sequences found by the translator, the
prefill, and fallback / metrics / access log / keys on ``/v1/messages`` as on chat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.fakes import FakeOllamaServer, FakeOpenAIServer

from .conftest import openai_pair_env, wait_ready

GW_KEY = "sk-gateway-anthropic"
SECRET = "sk-secret-backend-anth"
REPLY = "Hello from the fake server."
USER = [{"role": "user", "content": "Say hello"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["location"],
        },
    }
]
ARGS = {"location": "Paris", "unit": "celsius"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with (
        FakeOpenAIServer(api_key=SECRET, retry_after="1") as first,
        FakeOpenAIServer(api_key="sk-backup", retry_after="1") as second,
    ):
        yield first, second


@pytest.fixture
def gw(fakes: tuple[FakeOpenAIServer, FakeOpenAIServer], serve_gateway: Any) -> Any:
    first, second = fakes
    first.reset()
    second.reset()
    env = openai_pair_env(first, second, key=SECRET, backup_key="sk-backup")
    gw = serve_gateway(env, api_keys=GW_KEY, max_body_bytes=64 * 1024)
    wait_ready(gw, GW_KEY)
    return gw


def sdk(gw: Any, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("api_key", GW_KEY)
    return anthropic.Anthropic(base_url=gw.url, max_retries=0, **kw)


def upstream(server: FakeOpenAIServer) -> dict[str, Any]:
    return server.last("/v1/chat/completions").json


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event line, data)`` per SSE frame; every frame must have both, naming the same type."""
    out = []
    for frame in text.strip().split("\n\n"):
        lines = frame.split("\n")
        assert len(lines) == 2, frame
        assert lines[0].startswith("event: "), frame
        assert lines[1].startswith("data: "), frame
        event, data = lines[0][7:], orjson.loads(lines[1][6:])
        assert data["type"] == event
        out.append((event, data))
    return out


# ------------------------------------------------------------------------------------ create


def test_create(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client:
        raw = client.messages.with_raw_response.create(
            model="default",
            max_tokens=32,
            system=[{"type": "text", "text": "Be brief."}],
            messages=USER,
            metadata={"user_id": "u-1"},
            extra_body={"temperature": 0.5, "top_k": 20},
        )
        message = raw.parse()
    assert raw.headers["x-inference-backend"] == "openai"
    assert raw.headers["x-request-id"]
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 5
    sent = upstream(fakes[0])
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["max_tokens"] == 32
    assert sent["temperature"] == 0.5
    assert sent["top_k"] == 20
    assert sent["user"] == "u-1"
    assert "stream" not in sent or sent["stream"] is False


def test_max_tokens_is_stop_reason_max_tokens(gw: Any) -> None:
    with sdk(gw) as client:
        message = client.messages.create(model="default", max_tokens=2, messages=USER)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "Hello from"
    assert message.usage.output_tokens == 2


def test_bearer_key_is_accepted_too(gw: Any) -> None:
    with anthropic.Anthropic(
        base_url=gw.url, auth_token=GW_KEY, api_key=None, max_retries=0
    ) as client:
        message = client.messages.create(model="default", max_tokens=8, messages=USER)
    assert message.content[0].text == REPLY


def test_structured_output_is_a_json_schema_response_format(gw: Any, fakes: Any) -> None:
    schema = {"type": "object", "properties": {"reply": {"type": "string"}}}
    with sdk(gw) as client:
        message = client.messages.create(
            model="default", max_tokens=32, messages=USER,
            output_config={"format": {"type": "json_schema", "schema": schema}},
        )  # fmt: skip
    assert orjson.loads(message.content[0].text) == {"reply": REPLY}
    assert upstream(fakes[0])["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}
    }  # fmt: skip


def test_image_block_becomes_an_image_url_part(gw: Any, fakes: Any) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}  # fmt: skip
    with sdk(gw) as client:
        client.messages.create(
            model="default",
            max_tokens=8,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}],
        )
    content = upstream(fakes[0])["messages"][0]["content"]
    assert content == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "What?"},
    ]


def test_prefill_returns_only_the_continuation(gw: Any, fakes: Any) -> None:
    # the fake answers REPLY whatever the prompt, like a backend that echoes the prefill
    with sdk(gw) as client:
        message = client.messages.create(
            model="default",
            max_tokens=32,
            messages=[*USER, {"role": "assistant", "content": "Hello from"}],
        )
        streamed = client.messages.create(
            model="default",
            max_tokens=32,
            stream=True,
            messages=[*USER, {"role": "assistant", "content": "Hello from"}],
        )
        text = "".join(e.delta.text for e in streamed if e.type == "content_block_delta")  # type: ignore[union-attr]
    assert message.content[0].text == " the fake server."
    assert text == " the fake server."
    assert upstream(fakes[0])["messages"][-1] == {"role": "assistant", "content": "Hello from"}


# ------------------------------------------------------------------------------------ streams


def test_stream_every_event_on_the_wire(gw: Any) -> None:
    r = httpx.post(
        gw.url + "/v1/messages",
        headers={"x-api-key": GW_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "default", "max_tokens": 32, "messages": USER, "stream": True},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names == [
        "message_start", "ping", "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_")
    assert start["content"] == []
    assert start["role"] == "assistant"
    assert start["stop_reason"] is None
    assert events[2][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}  # fmt: skip
    deltas = [d["delta"] for e, d in events if e == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == REPLY
    assert events[-3][1] == {"type": "content_block_stop", "index": 0}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5
    assert delta["usage"]["input_tokens"] > 0
    assert "[DONE]" not in r.text


def test_sdk_stream_helper(gw: Any) -> None:
    with (
        sdk(gw) as client,
        client.messages.stream(model="default", max_tokens=32, messages=USER) as stream,
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert kinds.count("text") == 5
    assert kinds.count("content_block_delta") == 5
    assert final.content[0].text == REPLY
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5


# --------------------------------------------------------------------------------- stop sequences


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_found_by_the_translator(gw: Any, fakes: Any, stream: bool) -> None:
    # "the fake" spans two stream pieces (" the", " fake"): found across chunks
    with sdk(gw) as client:
        if stream:
            with client.messages.stream(
                model="default", max_tokens=32, messages=USER, stop_sequences=["zzz", "the fake"]
            ) as s:
                list(s)
                message = s.get_final_message()
        else:
            message = client.messages.create(
                model="default", max_tokens=32, messages=USER, stop_sequences=["zzz", "the fake"]
            )
    assert message.content[0].text == "Hello from "
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "the fake"
    assert message.usage.output_tokens == 4  # chunks up to the stop: "Hello" " from" " the" " fake"
    assert message.usage.input_tokens > 0  # the documented estimate: the usage never came
    assert "stop" not in upstream(fakes[0])  # the backend would strip it and say only "stop"


def test_stop_sequence_not_met_is_end_turn(gw: Any) -> None:
    with sdk(gw) as client:
        message = client.messages.create(
            model="default", max_tokens=32, messages=USER, stop_sequences=["nowhere"]
        )
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None


# ------------------------------------------------------------------------------------ tools


def test_tool_use_streamed_with_arguments_in_pieces(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "tool_call"
    with sdk(gw) as client, client.messages.stream(
        model="default", max_tokens=64, messages=USER, tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ) as stream:  # fmt: skip
        events = list(stream)
        final = stream.get_final_message()
    sent = upstream(fakes[0])
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": TOOLS[0]["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == "required"
    assert sent["parallel_tool_calls"] is False
    pieces = [
        e.delta.partial_json  # type: ignore[union-attr]
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"  # type: ignore[union-attr]
    ]
    arguments = orjson.dumps(ARGS).decode()
    assert len(pieces) == 5
    assert "".join(pieces) == arguments
    starts = [e for e in events if e.type == "content_block_start"]
    assert len(starts) == 1
    assert starts[0].content_block.type == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == ARGS
    assert final.stop_reason == "tool_use"
    assert block.id == "call_fake" + block.id.removeprefix("call_fake")  # the chat call's id


def test_tool_use_round_trip_with_tool_result(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "tool_call"
    with sdk(gw) as client:
        first = client.messages.create(model="default", max_tokens=64, messages=USER, tools=TOOLS)
        use = first.content[0]
        assert use.type == "tool_use"
        assert use.input == ARGS
        assert first.stop_reason == "tool_use"
        fakes[0].behaviour = "normal"
        second = client.messages.create(
            model="default",
            max_tokens=64,
            tools=TOOLS,
            messages=[
                *USER,
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"},
                    {"type": "text", "text": "And tomorrow?"},
                ]},
            ],
        )  # fmt: skip
    assert second.content[0].text == REPLY
    assert second.stop_reason == "end_turn"
    messages = upstream(fakes[0])["messages"]
    assert messages[1]["role"] == "assistant"
    call = messages[1]["tool_calls"][0]
    assert call["id"] == use.id
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == ARGS
    assert messages[2] == {"role": "tool", "tool_call_id": use.id, "content": "18 degrees"}
    assert messages[3] == {"role": "user", "content": "And tomorrow?"}


def test_tool_use_through_the_ollama_backend(serve_gateway: Any) -> None:
    with FakeOllamaServer(behaviour="tool_call") as ollama:
        ollama.tool_arguments = ARGS
        env = {
            "INFERENCE_PROVIDER": "ollama",
            "INFERENCE_OLLAMA_BASE_URL": ollama.url,
            "INFERENCE_OLLAMA_MODEL": "llama3.2:1b",
            "HEALTH_CHECK_INTERVAL": "3600",
        }
        gw = serve_gateway(env)
        with anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0) as client:
            message = client.messages.create(
                model="default", max_tokens=64, messages=USER, tools=TOOLS
            )
            with client.messages.stream(
                model="default", max_tokens=64, messages=USER, tools=TOOLS
            ) as stream:
                kinds = [e.type for e in stream]
                final = stream.get_final_message()
            ollama.behaviour = "normal"
            answer = client.messages.create(
                model="default",
                max_tokens=64,
                tools=TOOLS,
                messages=[
                    *USER,
                    {"role": "assistant", "content": [b.model_dump() for b in final.content]},
                    {"role": "user", "content": [{"type": "tool_result",
                                                  "tool_use_id": final.content[0].id,
                                                  "content": "sunny"}]},
                ],
            )  # fmt: skip
        sent = ollama.last("/api/chat").json
    for msg in (message, final):
        assert msg.stop_reason == "tool_use"
        assert msg.content[0].type == "tool_use"
        assert msg.content[0].input == ARGS
    assert "content_block_start" in kinds
    assert kinds[-1] == "message_stop"
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text"
    assert sent["messages"][-1]["role"] == "tool"
    assert sent["messages"][-1]["content"] == "sunny"
    assert sent["messages"][-2]["tool_calls"][0]["function"]["arguments"] == ARGS


# ------------------------------------------------------------------------------------ count


def test_count_tokens_uses_the_backend(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client:
        count = client.messages.count_tokens(
            model="default",
            system="five six",
            messages=[{"role": "user", "content": "one two three four"}],
        )
    assert count.input_tokens == 6  # the fake's tokenizer: one token per word
    sent = upstream(fakes[0])
    assert sent["max_tokens"] == 1
    assert not sent.get("stream")


# ------------------------------------------------------------------------------------ errors


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict), body
    assert body["type"] == "error", body
    return body["error"]


def test_invalid_request_error(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model="default", max_tokens=0, messages=USER)
        with pytest.raises(anthropic.BadRequestError) as doc:
            client.messages.create(
                model="default",
                max_tokens=8,
                messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],
            )
    assert info.value.status_code == 400
    assert _error(info.value)["type"] == "invalid_request_error"
    assert "max_tokens" in _error(info.value)["message"]
    assert "messages.0.content.0" in _error(doc.value)["message"]
    r = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": GW_KEY},
                   json={"model": "default", "messages": USER})  # fmt: skip
    assert r.status_code == 400
    error = {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert r.json() == {"type": "error", "error": error}
    assert not [r for r in fakes[0].requests if r.path == "/v1/chat/completions"]


def test_authentication_error(gw: Any, fakes: Any) -> None:
    with (
        sdk(gw, api_key="sk-wrong") as client,
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        client.messages.create(model="default", max_tokens=8, messages=USER)
    assert info.value.status_code == 401
    assert _error(info.value)["type"] == "authentication_error"
    assert "x-api-key" in _error(info.value)["message"]
    with sdk(gw, api_key="sk-wrong") as client, pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model="default", messages=USER)


def test_not_found_error(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "404"
    with sdk(gw) as client, pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such-model", max_tokens=8, messages=USER)
    assert _error(info.value)["type"] == "not_found_error"


def test_request_too_large(gw: Any) -> None:
    big = [{"role": "user", "content": "x" * 70_000}]
    with sdk(gw) as client, pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="default", max_tokens=8, messages=big)
    assert info.value.status_code == 413
    assert _error(info.value)["type"] == "request_too_large"


def test_rate_limit_error(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "429"
    fakes[1].behaviour = "429"
    with sdk(gw) as client, pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="default", max_tokens=8, messages=USER)
    assert _error(info.value)["type"] == "rate_limit_error"
    assert info.value.response.headers["retry-after"] == "1"


def test_overloaded_error_when_every_backend_failed(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "503"
    fakes[1].behaviour = "503"
    with sdk(gw) as client, pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model="default", max_tokens=8, messages=USER)
    assert info.value.status_code == 529
    assert _error(info.value)["type"] == "overloaded_error"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert SECRET not in info.value.response.text


def test_api_error_when_the_backend_key_is_wrong(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "401"
    fakes[1].behaviour = "401"
    with sdk(gw) as client, pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="default", max_tokens=8, messages=USER)
    assert info.value.status_code >= 500
    assert _error(info.value)["type"] in ("api_error", "overloaded_error")


def test_error_event_after_the_first_byte(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "midstream_error"
    r = httpx.post(
        gw.url + "/v1/messages",
        headers={"x-api-key": GW_KEY},
        json={"model": "default", "max_tokens": 32, "messages": USER, "stream": True},
    )
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[0][0] == "message_start"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] in ("api_error", "overloaded_error")
    assert "message_stop" not in [e for e, _ in events]
    fakes[0].behaviour = "midstream_error"
    with (
        sdk(gw) as client,
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(model="default", max_tokens=32, messages=USER) as stream,
    ):
        list(stream)


# ------------------------------------------------------------------ same pipeline as chat


def test_fallback_metrics_and_access_log(
    gw: Any, fakes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fakes[0].behaviour = "503"
    with caplog.at_level(logging.INFO, logger="inference_core.gateway.access"), sdk(gw) as client:
        raw = client.messages.with_raw_response.create(
            model="default", max_tokens=8, messages=USER, extra_headers={"x-request-id": "anth-1"}
        )
        with client.messages.stream(model="default", max_tokens=8, messages=USER) as stream:
            list(stream)
    assert raw.headers["x-inference-backend"] == "backup"
    assert raw.parse().content[0].text
    lines = [
        r.fields for r in caplog.records if getattr(r, "fields", {}).get("request_id") == "anth-1"
    ]  # type: ignore[attr-defined]
    assert lines
    assert lines[0]["path"] == "/v1/messages"
    assert lines[0]["backend"] == "backup"
    assert lines[0]["fallbacks"] == 1
    assert lines[0]["status"] == 200
    # /metrics takes the key when keys are set (INFERENCE_GATEWAY_PROTECT_METRICS, default)
    metrics = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {GW_KEY}"}).text
    assert 'endpoint="messages",status="200"' in metrics
    assert 'inference_gateway_fallbacks_total{backend="openai"' in metrics


def test_limits_and_deadlines_apply_as_on_chat(fakes: Any, serve_gateway: Any) -> None:
    fakes[0].reset()
    env = {
        "INFERENCE_PROVIDER": "openai",
        "OPENAI_API_BASE": fakes[0].base_url,
        "OPENAI_API_KEY": SECRET,
        "INFERENCE_MAX_RETRIES": "0",
        "INFERENCE_FIRST_TOKEN_TIMEOUT": "0.3",
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    gw = serve_gateway(env, max_tokens_cap=100)
    with anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0) as client:
        with pytest.raises(anthropic.BadRequestError) as capped:
            client.messages.create(model="default", max_tokens=101, messages=USER)
        fakes[0].behaviour = "slow"
        fakes[0].delay = 2
        with pytest.raises(anthropic.APIStatusError) as slow:
            client.messages.create(model="default", max_tokens=8, messages=USER)
    fakes[0].reset()
    assert "max_tokens" in _error(capped.value)["message"]
    assert "100" in _error(capped.value)["message"]
    assert slow.value.status_code in (504, 529)
    assert _error(slow.value)["type"] in ("timeout_error", "overloaded_error")
    assert "first-token timeout" in _error(slow.value)["message"]


def test_both_protocols_through_inference_serve(fakes: Any) -> None:
    """`inference serve` in its own process: Messages and Responses from the official SDKs."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import openai

    first, _ = fakes
    first.reset()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "INFERENCE_PROVIDER": "openai",
        "OPENAI_API_BASE": first.base_url,
        "OPENAI_API_KEY": SECRET,
        "INFERENCE_GATEWAY_API_KEYS": GW_KEY,
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    cli = str(Path(sys.executable).with_name("inference"))
    proc = subprocess.Popen(
        [cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with anthropic.Anthropic(base_url=base, api_key=GW_KEY, max_retries=0) as client:
            message = client.messages.create(model="default", max_tokens=16, messages=USER)
            with client.messages.stream(model="default", max_tokens=16, messages=USER) as st:
                kinds = [e.type for e in st]
        with openai.OpenAI(base_url=base + "/v1", api_key=GW_KEY, max_retries=0) as oai:
            first_r = oai.responses.create(model="default", input="one")
            second_r = oai.responses.create(
                model="default", input="two", previous_response_id=first_r.id
            )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert message.content[0].text == REPLY
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert second_r.output_text == REPLY
    assert '"path":"/v1/messages"' in out
    assert '"path":"/v1/responses"' in out
    assert SECRET not in out
