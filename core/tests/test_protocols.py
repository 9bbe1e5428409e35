"""The protocol translators alone (no gateway): chunk folding, stop sequences, prefill, event
order for mixed text + tool answers, request translation errors, error shapes, the store."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from inference_core.errors import AllBackendsFailed, Attempt, RateLimited
from inference_core.gateway.errors import error_for as openai_error_for
from inference_core.models import ChatChunk
from inference_core.protocols import anthropic, responses
from inference_core.protocols._common import ProtocolError
from inference_core.protocols.chunks import ChunkReader
from inference_core.protocols.store import MemoryResponseStore, StoredResponse


def chunk(
    content: str | None = None,
    *,
    tools: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> ChatChunk:
    choices = (
        []
        if usage is not None
        else [
            {
                "index": 0,
                "delta": {"content": content, "tool_calls": tools},
                "finish_reason": finish,
            }
        ]
    )
    return ChatChunk.model_validate(
        {"id": "c", "created": 1, "model": "served", "choices": choices, "usage": usage}
    )


def texts(steps: list[tuple[Any, ...]]) -> str:
    return "".join(s[1] for s in steps if s[0] == "text")


# ------------------------------------------------------------------------------ chunk reader


def test_stop_sequence_split_over_chunks_is_found_and_cut() -> None:
    reader = ChunkReader(["END!", "xyz"])
    out = []
    for piece in ["Hello E", "N", "D", "! more"]:
        out += reader.feed(chunk(piece))
    assert texts(out) == "Hello "
    assert reader.stopped
    assert reader.stop_sequence == "END!"
    assert reader.feed(chunk("after")) == []


def test_held_back_tail_is_released_when_no_stop_follows() -> None:
    reader = ChunkReader(["END!"])
    first = reader.feed(chunk("Hello EN"))
    assert texts(first) == "Hello "  # "EN" could start "END!"
    second = reader.feed(chunk("ough"))
    assert texts(second) == "ENough"
    reader.feed(chunk("E", finish="stop"))
    assert texts(reader.close()) == "E"
    assert not reader.stopped
    assert reader.text == "Hello ENoughE"


def test_earliest_stop_sequence_wins() -> None:
    reader = ChunkReader(["b", "a"])
    steps = reader.feed(chunk("xxab"))
    assert texts(steps) == "xx"
    assert reader.stop_sequence == "a"


def test_echoed_prefill_is_removed_even_in_pieces() -> None:
    reader = ChunkReader(prefill="The answer")
    steps = reader.feed(chunk("The ans")) + reader.feed(chunk("wer is 4"))
    assert texts(steps) == " is 4"
    not_echoed = ChunkReader(prefill="The answer")
    assert texts(not_echoed.feed(chunk(" is 4"))) == " is 4"


def test_tool_calls_fold_into_start_and_argument_pieces() -> None:
    reader = ChunkReader()
    steps = reader.feed(
        chunk(
            tools=[
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        )
    )
    steps += reader.feed(chunk(tools=[{"index": 0, "function": {"arguments": '{"a":'}}]))
    steps += reader.feed(chunk(tools=[{"index": 0, "function": {"arguments": "1}"}}]))
    steps += reader.feed(
        chunk(
            tools=[{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": {"b": 2}}}]
        )
    )
    assert steps == [
        ("tool", 0, "call_1", "f"),
        ("args", 0, '{"a":'),
        ("args", 0, "1}"),
        ("tool", 1, "call_2", "g"),
        ("args", 1, '{"b":2}'),
    ]
    assert reader.tools[0]["arguments"] == '{"a":1}'


# ------------------------------------------------------------------------------ anthropic


def frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in data.decode().strip().split("\n\n"):
        event, payload = frame.split("\n")
        out.append((event[7:], orjson.loads(payload[6:])))
    return out


def test_messages_stream_text_then_tool_blocks_in_order() -> None:
    req = anthropic.MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
    )
    stream = anthropic.MessagesStream(req, None)
    data = stream.feed(chunk("Let me check."))
    data += stream.feed(
        chunk(tools=[{"index": 0, "id": "toolu_1", "function": {"name": "f", "arguments": '{"q"'}}])
    )
    data += stream.feed(chunk(tools=[{"index": 0, "function": {"arguments": ':"v"}'}}]))
    data += stream.feed(chunk(finish="tool_calls"))
    data += stream.feed(
        chunk(usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    )
    data += stream.end()
    events = frames(data)
    assert [(e, d.get("index")) for e, d in events] == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "f",
        "input": {},
    }
    assert events[9][1]["delta"]["stop_reason"] == "tool_use"
    assert events[9][1]["usage"]["input_tokens"] == 7
    assert events[9][1]["usage"]["output_tokens"] == 3


def test_messages_stream_with_no_chunk_still_has_the_frame() -> None:
    req = anthropic.MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}
    )
    events = frames(anthropic.MessagesStream(req, None).end())
    assert [e for e, _ in events] == ["message_start", "ping", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"type": "document", "source": {}}], "messages.0.content.0"),
        ([{"type": "tool_result", "content": "x"}], "messages.0.content.0"),
        ([{"type": "image", "source": {"type": "file", "file_id": "f"}}], "messages.0.content.0"),
        (42, "messages.0.content"),
    ],
)
def test_unsupported_blocks_are_a_400_naming_the_field(content: Any, param: str) -> None:
    req = anthropic.MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": content}]}
    )
    with pytest.raises(ProtocolError) as info:
        anthropic.to_chat(req)
    assert info.value.param == param
    assert info.value.status == 400


def test_tool_choice_and_server_tools() -> None:
    base = {
        "model": "m",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    }
    for choice, expected in [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ]:
        chat, _ = anthropic.to_chat(
            anthropic.MessagesRequest.model_validate({**base, "tool_choice": choice})
        )
        assert chat.tool_choice == expected
    with pytest.raises(ProtocolError) as info:
        anthropic.to_chat(
            anthropic.MessagesRequest.model_validate(
                {**base, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
            )
        )
    assert info.value.param == "tools.0"


def test_anthropic_errors_keep_the_status_and_headers() -> None:
    limited = RateLimited("slow down", backend="b", retry_after=3)
    status, body, headers = anthropic.error_for(limited, None, openai_error_for)
    assert status == 429
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert (b"retry-after", b"3") in headers
    failed = AllBackendsFailed([Attempt("b", "unavailable", "down", 503)])
    status, body, headers = anthropic.error_for(failed, None, openai_error_for)
    assert status == 529
    assert orjson.loads(body)["error"]["type"] == "overloaded_error"
    assert (b"x-should-retry", b"false") in headers
    status, body, _ = anthropic.error_for(ValueError("secret detail"), None, openai_error_for)
    assert status == 500
    assert b"secret detail" not in body
    assert orjson.loads(body)["error"]["type"] == "api_error"


# ------------------------------------------------------------------------------ responses


def test_responses_stream_message_then_call_indexes() -> None:
    req = responses.ResponsesRequest.model_validate({"model": "m", "input": "x"})
    stream = responses.ResponsesStream(req, "resp_1")
    data = stream.feed(chunk("Checking"))
    data += stream.feed(
        chunk(tools=[{"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{}"}}])
    )
    tail, final = stream.end()
    events = [d for _, d in frames(data + tail)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
    ]
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "call_9"
    assert events[-1]["type"] == "response.completed"


def test_responses_input_item_errors() -> None:
    for item, param in [
        ({"type": "item_reference", "id": "x"}, "input.0.type"),
        ({"type": "function_call_output", "output": "x"}, "input.0.call_id"),
        ({"role": "tool", "content": "x"}, "input.0.role"),
    ]:
        req = responses.ResponsesRequest.model_validate({"model": "m", "input": [item]})
        with pytest.raises(ProtocolError) as info:
            responses.to_chat(req, None)
        assert info.value.param == param


def test_memory_store_bounds_count_and_age() -> None:
    now = [0.0]
    store = MemoryResponseStore(max_items=2, ttl=10, clock=lambda: now[0])

    async def run() -> None:
        for i in range(3):
            await store.put(StoredResponse(f"r{i}", {"id": f"r{i}"}))
        assert await store.get("r0") is None  # over the count: the oldest went
        assert (await store.get("r2")).response == {"id": "r2"}  # type: ignore[union-attr]
        now[0] = 10.5
        assert await store.get("r1") is None  # older than the ttl
        assert len(store) == 0
        await store.put(StoredResponse("r3", {}))
        assert await store.delete("r3") is True
        assert await store.delete("r3") is False

    asyncio.run(run())
    with pytest.raises(ValueError, match="max_items"):
        MemoryResponseStore(max_items=0)
