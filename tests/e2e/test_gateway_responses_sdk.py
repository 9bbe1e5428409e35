"""The official ``openai`` SDK's Responses calls against a real gateway server over fake
upstreams through the installed plugins (OpenAI-compatible fakes ``openai`` -> ``backup``, and
the Ollama fake): plain, streamed (event order, ``sequence_number``, ``output_index``,
``content_index`` checked), function calling with arguments arriving in several chunks and
the ``function_call_output`` round trip, ``previous_response_id`` over the store, the stored
GET/DELETE routes, ``max_output_tokens`` -> ``incomplete``, structured output, errors, and the
shared pipeline (fallback, metrics, keys) on ``/v1/responses``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fakes import FakeOllamaServer, FakeOpenAIServer

from .conftest import openai_pair_env, wait_ready

GW_KEY = "sk-gateway-responses"
SECRET = "sk-secret-backend-resp"
REPLY = "Hello from the fake server."
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
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
    gw = serve_gateway(env, api_keys=GW_KEY, responses_store_max=3)
    wait_ready(gw, GW_KEY)
    return gw


def sdk(gw: Any, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=kw.pop("api_key", GW_KEY), max_retries=0)


def upstream(server: FakeOpenAIServer) -> dict[str, Any]:
    return server.last("/v1/chat/completions").json


def sse_events(text: str) -> list[dict[str, Any]]:
    """The data of every frame; each frame's ``event:`` line must name its ``type``."""
    out = []
    for frame in text.strip().split("\n\n"):
        event, data = frame.split("\n")
        assert event.startswith("event: "), frame
        assert data.startswith("data: "), frame
        payload = orjson.loads(data[6:])
        assert payload["type"] == event[7:]
        out.append(payload)
    return out


def test_plain(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client:
        raw = client.responses.with_raw_response.create(
            model="default", input="Say hello", instructions="Be brief.", temperature=0.2,
            max_output_tokens=64,
        )  # fmt: skip
        response = raw.parse()
    assert raw.headers["x-inference-backend"] == "openai"
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.error is None
    assert response.output_text == REPLY
    item = response.output[0]
    assert item.type == "message"
    assert item.role == "assistant"
    assert item.id.startswith("msg_")
    assert item.content[0].type == "output_text"
    assert response.usage is not None
    assert response.usage.output_tokens == 5
    assert response.usage.total_tokens == response.usage.input_tokens + 5
    sent = upstream(fakes[0])
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["max_tokens"] == 64
    assert sent["temperature"] == 0.2


def test_items_input_with_developer_role_and_parts(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client:
        client.responses.create(
            model="default",
            input=[
                {"role": "developer", "content": "Rules."},
                {"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "Look: "},
                             {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            ],
        )  # fmt: skip
    assert upstream(fakes[0])["messages"] == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look: "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]  # fmt: skip


def test_stream_event_order_on_the_wire(gw: Any) -> None:
    r = httpx.post(
        gw.base_url + "/responses",
        headers={"authorization": f"Bearer {GW_KEY}"},
        json={"model": "default", "input": "Say hello", "stream": True},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 5,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress"
    item_id = events[2]["item"]["id"]
    for e in events[2:-1]:
        assert e["output_index"] == 0
        if "item_id" in e:
            assert e["item_id"] == item_id
    for e in events[3:11]:
        assert e["content_index"] == 0
    assert "".join(e["delta"] for e in events[4:9]) == REPLY
    assert events[9]["text"] == REPLY
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == REPLY
    assert final["usage"]["output_tokens"] == 5
    assert "[DONE]" not in r.text


def test_sdk_stream_helper(gw: Any) -> None:
    with sdk(gw) as client, client.responses.stream(model="default", input="Say hello") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final.output_text == REPLY
    assert final.status == "completed"


def test_incomplete_at_max_output_tokens(gw: Any) -> None:
    with sdk(gw) as client:
        response = client.responses.create(model="default", input="Say hello", max_output_tokens=2)
        events = list(
            client.responses.create(
                model="default", input="Say hello", max_output_tokens=2, stream=True
            )
        )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Hello from"
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


def test_function_call_streamed_in_pieces_and_round_trip(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "tool_call"
    with sdk(gw) as client:
        with client.responses.stream(
            model="default", input="Weather in Paris?", tools=TOOLS, tool_choice="required"
        ) as stream:
            events = list(stream)
            final = stream.get_final_response()
        kinds = [e.type for e in events]
        assert kinds == [
            "response.created", "response.in_progress", "response.output_item.added",
            *["response.function_call_arguments.delta"] * 5,
            "response.function_call_arguments.done", "response.output_item.done",
            "response.completed",
        ]  # fmt: skip
        pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]  # type: ignore[union-attr]
        assert "".join(pieces) == orjson.dumps(ARGS).decode()
        call = final.output[0]
        assert call.type == "function_call"
        assert call.name == "get_weather"
        assert orjson.loads(call.arguments) == ARGS
        sent = upstream(fakes[0])
        assert sent["tool_choice"] == "required"
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        fakes[0].behaviour = "normal"
        answer = client.responses.create(
            model="default",
            previous_response_id=final.id,
            tools=TOOLS,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}],
        )
    assert answer.output_text == REPLY
    messages = upstream(fakes[0])["messages"]
    assert messages[0] == {"role": "user", "content": "Weather in Paris?"}
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert orjson.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == ARGS
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18 C"}


def test_function_call_round_trip_without_the_store(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "tool_call"
    with sdk(gw) as client:
        first = client.responses.create(model="default", input="Weather?", tools=TOOLS, store=False)
        call = first.output[0]
        assert call.type == "function_call"
        fakes[0].behaviour = "normal"
        client.responses.create(
            model="default", tools=TOOLS,
            input=[{"role": "user", "content": "Weather?"},
                   {"type": "function_call", "call_id": call.call_id, "name": call.name,
                    "arguments": call.arguments},
                   {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
        )  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)  # store=False: not kept
    messages = upstream(fakes[0])["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "rain"}


def test_previous_response_id_sends_the_whole_history(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client:
        one = client.responses.create(model="default", input="one", instructions="Old rules.")
        two = client.responses.create(model="default", input="two", previous_response_id=one.id)
        client.responses.create(
            model="default", input="three", previous_response_id=two.id, instructions="New rules."
        )
        assert two.previous_response_id == one.id
    assert upstream(fakes[0])["messages"] == [
        {"role": "system", "content": "New rules."},  # instructions are not carried over
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "three"},
    ]


def test_unknown_previous_response_is_a_400_not_a_silent_drop(gw: Any, fakes: Any) -> None:
    with sdk(gw) as client, pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="default", input="x", previous_response_id="resp_nope")
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"
    assert not [r for r in fakes[0].requests if r.path == "/v1/chat/completions"]


def test_get_delete_and_the_bounded_store(gw: Any) -> None:
    with sdk(gw) as client:
        ids = [client.responses.create(model="default", input=f"n{i}").id for i in range(4)]
        with pytest.raises(openai.NotFoundError):  # max 3 stored: the oldest went first
            client.responses.retrieve(ids[0])
        got = client.responses.retrieve(ids[3])
        assert got.id == ids[3]
        assert got.output_text == REPLY
        client.responses.delete(ids[3])
        with pytest.raises(openai.NotFoundError) as info:
            client.responses.retrieve(ids[3])
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(ids[3])
    assert "not found" in info.value.message
    r = httpx.get(gw.base_url + f"/responses/{ids[2]}")
    assert r.status_code == 401  # the store needs the key like every route
    r = httpx.put(
        gw.base_url + f"/responses/{ids[2]}", headers={"authorization": f"Bearer {GW_KEY}"}
    )
    assert r.status_code == 405


def test_structured_output(gw: Any, fakes: Any) -> None:
    schema = {"type": "object", "properties": {"reply": {"type": "string"}}, "required": ["reply"],
              "additionalProperties": False}  # fmt: skip
    with sdk(gw) as client:
        response = client.responses.create(
            model="default", input="Say hello",
            text={"format": {"type": "json_schema", "name": "greeting", "schema": schema,
                             "strict": True}},
        )  # fmt: skip
    assert orjson.loads(response.output_text) == {"reply": REPLY}
    assert upstream(fakes[0])["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "greeting", "schema": schema, "strict": True}
    }  # fmt: skip


def test_errors(gw: Any, fakes: Any) -> None:
    with sdk(gw, api_key="sk-wrong") as client, pytest.raises(openai.AuthenticationError):
        client.responses.create(model="default", input="x")
    with sdk(gw) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.responses.create(model="default", input=[{"type": "web_search_call", "id": "x"}])
        assert bad.value.param == "input.0.type"
        with pytest.raises(openai.BadRequestError) as tool:
            client.responses.create(model="default", input="x", tools=[{"type": "web_search"}])
        assert tool.value.param == "tools.0"
        fakes[0].behaviour = fakes[1].behaviour = "429"
        with pytest.raises(openai.RateLimitError):
            client.responses.create(model="default", input="x")
        fakes[0].behaviour = fakes[1].behaviour = "503"
        with pytest.raises(openai.InternalServerError) as down:
            client.responses.create(model="default", input="x")
        assert down.value.status_code == 503
        assert down.value.response.headers["x-should-retry"] == "false"


def test_error_event_after_the_first_byte(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "midstream_error"
    r = httpx.post(
        gw.base_url + "/responses",
        headers={"authorization": f"Bearer {GW_KEY}"},
        json={"model": "default", "input": "x", "stream": True},
    )
    events = sse_events(r.text)
    assert events[0]["type"] == "response.created"
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["message"]
    assert events[-1]["response"]["status"] == "failed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_fallback_and_metrics(gw: Any, fakes: Any) -> None:
    fakes[0].behaviour = "503"
    with sdk(gw) as client:
        raw = client.responses.with_raw_response.create(model="default", input="x")
        list(client.responses.create(model="default", input="x", stream=True))
    assert raw.headers["x-inference-backend"] == "backup"
    assert raw.parse().output_text == REPLY
    # /metrics takes the key when keys are set (INFERENCE_GATEWAY_PROTECT_METRICS, default)
    metrics = httpx.get(gw.url + "/metrics", headers={"authorization": f"Bearer {GW_KEY}"}).text
    assert 'endpoint="responses",status="200"' in metrics


def test_function_call_through_the_ollama_backend(serve_gateway: Any) -> None:
    with FakeOllamaServer(behaviour="tool_call") as ollama:
        ollama.tool_arguments = ARGS
        env = {
            "INFERENCE_PROVIDER": "ollama",
            "INFERENCE_OLLAMA_BASE_URL": ollama.url,
            "INFERENCE_OLLAMA_MODEL": "llama3.2:1b",
            "HEALTH_CHECK_INTERVAL": "3600",
        }
        gw = serve_gateway(env)
        with openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0) as client:
            plain = client.responses.create(model="default", input="Weather?", tools=TOOLS)
            with client.responses.stream(model="default", input="Weather?", tools=TOOLS) as stream:
                list(stream)
                final = stream.get_final_response()
            ollama.behaviour = "normal"
            answer = client.responses.create(
                model="default", previous_response_id=final.id, tools=TOOLS,
                input=[{"type": "function_call_output", "call_id": final.output[0].call_id,
                        "output": "sunny"}],
            )  # fmt: skip
        sent = ollama.last("/api/chat").json
    for response in (plain, final):
        call = response.output[0]
        assert call.type == "function_call"
        assert orjson.loads(call.arguments) == ARGS
    assert answer.output_text
    assert sent["messages"][-1] == {"role": "tool", "content": "sunny"} or (
        sent["messages"][-1]["role"] == "tool" and sent["messages"][-1]["content"] == "sunny"
    )
    assert sent["messages"][-2]["tool_calls"][0]["function"]["arguments"] == ARGS


def test_max_output_tokens_cap_applies(fakes: Any, serve_gateway: Any) -> None:
    fakes[0].reset()
    env = {"INFERENCE_PROVIDER": "openai", "OPENAI_API_BASE": fakes[0].base_url,
           "OPENAI_API_KEY": SECRET, "HEALTH_CHECK_INTERVAL": "3600"}  # fmt: skip
    gw = serve_gateway(env, max_tokens_cap=100)
    with (
        openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.responses.create(model="default", input="x", max_output_tokens=101)
    assert info.value.param == "max_output_tokens"
