"""Shape and order checks of Messages and Responses answers (the conformance kit and tests).

Each function raises ``AssertionError`` naming what is wrong; it returns the parsed events.
They encode what the official SDKs rely on (PROTOCOLS.md): every SSE frame has an ``event:``
line naming its ``type``; Anthropic's block order; Responses' ``sequence_number`` run and
``output_index`` / ``content_index``.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["check_message", "check_messages_stream", "check_response", "check_responses_stream",
           "parse_sse"]  # fmt: skip

_STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    """The payloads of ``data``'s frames; each frame must be ``event: T`` + ``data: {type: T}``."""
    out = []
    for frame in data.decode().strip().split("\n\n"):
        lines = [line for line in frame.split("\n") if not line.startswith(":")]
        assert len(lines) == 2, f"a frame must be one event: and one data: line: {frame!r}"
        assert lines[0].startswith("event: "), f"no event: line: {frame!r}"
        assert lines[1].startswith("data: "), f"no data: line: {frame!r}"
        payload = orjson.loads(lines[1][6:])
        assert payload.get("type") == lines[0][7:], f"event and type differ: {frame!r}"
        out.append(payload)
    return out


def check_message(message: dict[str, Any]) -> None:
    """A Messages answer object."""
    assert str(message.get("id", "")).startswith("msg_"), "id must start with msg_"
    assert message.get("type") == "message"
    assert message.get("role") == "assistant"
    assert isinstance(message.get("content"), list), "content must be a list of blocks"
    for block in message["content"]:
        assert block.get("type") in ("text", "tool_use", "thinking"), block
    assert message.get("stop_reason") in _STOP_REASONS, message.get("stop_reason")
    usage = message.get("usage") or {}
    assert isinstance(usage.get("input_tokens"), int), "usage.input_tokens"
    assert isinstance(usage.get("output_tokens"), int), "usage.output_tokens"


def check_messages_stream(data: bytes) -> list[dict[str, Any]]:
    """A Messages event stream, complete (``message_stop``) or ended by ``error``."""
    events = [e for e in parse_sse(data) if e["type"] != "ping"]
    assert events, "no events"
    assert events[0]["type"] == "message_start", "must start with message_start"
    assert events[0]["message"]["content"] == [], "message_start carries no content"
    open_index: int | None = None
    next_index = 0
    for event in events[1:]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None, "a block starts while another is open"
            assert event["index"] == next_index, "block indexes must count up from 0"
            open_index = next_index
            next_index += 1
        elif kind == "content_block_delta":
            assert event["index"] == open_index, "a delta for a block that is not open"
            assert event["delta"]["type"] in ("text_delta", "input_json_delta", "thinking_delta",
                                              "signature_delta")  # fmt: skip
        elif kind == "content_block_stop":
            assert event["index"] == open_index, "stop of a block that is not open"
            open_index = None
        elif kind == "message_delta":
            assert open_index is None, "message_delta while a block is open"
            assert event["delta"]["stop_reason"] in _STOP_REASONS
            assert isinstance(event["usage"]["output_tokens"], int)
        elif kind in ("message_stop", "error"):
            assert event is events[-1], f"{kind} must be the last event"
        else:
            raise AssertionError(f"unknown event {kind!r}")
    assert events[-1]["type"] in ("message_stop", "error"), "must end with message_stop"
    if events[-1]["type"] == "message_stop":
        assert events[-2]["type"] == "message_delta", "message_delta comes before message_stop"
    return events


def check_response(response: dict[str, Any]) -> None:
    """A Responses ``response`` object."""
    assert str(response.get("id", "")).startswith("resp_"), "id must start with resp_"
    assert response.get("object") == "response"
    assert response.get("status") in ("completed", "incomplete", "failed", "in_progress")
    if response["status"] == "incomplete":
        assert (response.get("incomplete_details") or {}).get("reason"), "incomplete_details"
    for item in response.get("output") or []:
        assert item.get("type") in ("message", "function_call", "reasoning"), item
        if item["type"] == "function_call":
            assert item.get("call_id"), item
            assert isinstance(item.get("arguments"), str), item


def check_responses_stream(data: bytes) -> list[dict[str, Any]]:
    """A Responses event stream: sequence numbers 0..n, items opened and closed in order."""
    events = parse_sse(data)
    assert [e.get("sequence_number") for e in events] == list(range(len(events))), (
        "sequence_number must count 0, 1, 2, ..."
    )
    assert events[0]["type"] == "response.created", "must start with response.created"
    open_items: dict[int, str] = {}
    next_index = 0
    for event in events[1:]:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert event["output_index"] == next_index, "output_index must count up from 0"
            open_items[next_index] = event["item"]["id"]
            next_index += 1
        elif kind == "response.output_item.done":
            assert open_items.pop(event["output_index"], None) is not None, "done of no item"
        elif "item_id" in event:
            assert open_items.get(event["output_index"]) == event["item_id"], (
                f"{kind}: item_id/output_index of no open item"
            )
            if ".content_part." in kind or ".output_text." in kind:
                assert isinstance(event.get("content_index"), int), f"{kind}: content_index"
    last = events[-1]["type"]
    assert last in ("response.completed", "response.incomplete", "response.failed"), last
    if last != "response.failed":
        assert not open_items, "items left open"
        check_response(events[-1]["response"])
    return events
