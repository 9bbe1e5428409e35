"""The Anthropic Messages API (``POST /v1/messages``) over chat completions.

Request (:class:`MessagesRequest`, checked as Anthropic does: ``model``, ``max_tokens`` >= 1
and ``messages`` are required) -> :func:`to_chat` -> a :class:`~inference_core.models.ChatRequest`:

* ``system`` (a string or text blocks) -> the first ``system`` message;
* blocks: ``text`` -> text, ``image`` (base64 or url) -> ``image_url`` part, an assistant's
  ``tool_use`` -> ``tool_calls`` (``input`` as JSON text), a user's ``tool_result`` -> a
  ``tool`` message whose ``tool_call_id`` is the ``tool_use_id`` exactly (before the user's
  other content); ``thinking``/``redacted_thinking`` blocks are dropped; ``document``,
  server tools and other block types are a 400 naming the field;
* ``stop_sequences`` are NOT sent to the backend: :class:`~.chunks.ChunkReader` finds them in
  the answer (a chat backend does not say which stop string fired), so a request with stop
  sequences always streams from the backend, also when the client did not ask to stream;
* ``temperature``, ``top_p``, ``top_k`` (passed on as the extra ``top_k``), ``metadata.user_id``
  -> ``user``, ``output_config.format`` (``json_schema``) -> ``response_format``;
  ``tools`` -> function tools (``input_schema`` -> ``parameters``);
  ``tool_choice`` ``auto``/``any``/``tool``/``none`` -> ``auto``/``required``/the function/
  ``none``, ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``;
* an assistant prefill (last message from the assistant) is sent as is and only the
  continuation is returned (an echoed prefill is removed).

Answer: ``{"id": "msg_...", "type": "message", "role": "assistant", "content": [text and
tool_use blocks], "stop_reason": end_turn|max_tokens|stop_sequence|tool_use, "stop_sequence",
"usage": {"input_tokens", "output_tokens", ...}}``.  Stream: :class:`MessagesStream`, with
Anthropic's event order.  Errors: :func:`error_for` (Anthropic's shape and types).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..models import ChatRequest
from ._common import EventStream, ProtocolError, image_url, new_id, sse
from .chunks import ChunkReader, Step

__all__ = [
    "CountTokensRequest",
    "MessagesRequest",
    "MessagesStream",
    "error_for",
    "message_from_chat",
    "message_from_reader",
    "parse_request",
    "to_chat",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class MessagesRequest(_Lenient):
    """The body of ``POST /v1/messages`` (unknown fields are accepted and ignored)."""

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    stream: bool = False


class CountTokensRequest(_Lenient):
    """The body of ``POST /v1/messages/count_tokens`` (as Messages, without ``max_tokens``)."""

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


def parse_request(body: bytes, cls: type[BaseModel] = MessagesRequest) -> Any:
    """Validate a body; a :class:`ProtocolError` naming the first bad field otherwise."""
    try:
        return cls.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            raise ProtocolError(
                f"The request body is not valid JSON: {first.get('msg')}", code="invalid_json"
            ) from None
        loc = ".".join(str(p) for p in first.get("loc", ()))
        if not loc:
            raise ProtocolError("The request body must be a JSON object.") from None
        if first.get("type") == "missing":
            raise ProtocolError(f"{loc}: Field required", param=loc) from None
        raise ProtocolError(f"{loc}: {first.get('msg')}", param=loc) from None


# ---------------------------------------------------------------------------------- requests


def _text_of(blocks: Any, param: str) -> str:
    """A string, or the joined ``text`` of text blocks."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise ProtocolError(f"'{param}' must be a string or a list of text blocks.", param=param)
    parts = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise ProtocolError(f"'{param}.{i}' must be a text block.", param=f"{param}.{i}")
        parts.append(str(block.get("text", "")))
    return "\n".join(parts) if len(parts) > 1 else (parts[0] if parts else "")


def _tool_result_content(block: dict[str, Any], param: str) -> str:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        pieces = []
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text":
                pieces.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ProtocolError(
                    f"Unsupported block type {kind!r} inside a tool_result at "
                    f"'{param}.content.{i}' (only text is supported here).",
                    param=f"{param}.content.{i}",
                )
        text = "\n".join(pieces)
    else:
        raise ProtocolError(f"'{param}.content' must be a string or blocks.", param=param)
    if block.get("is_error"):
        return f"Error: {text}" if text else "Error"
    return text


def _messages(req: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Chat messages for ``req`` and the assistant prefill (or None)."""
    out: list[dict[str, Any]] = []
    if req.system is not None:
        system = _text_of(req.system, "system")
        if system:
            out.append({"role": "system", "content": system})
    prefill: str | None = None
    last = len(req.messages) - 1
    for m_index, message in enumerate(req.messages):
        where = f"messages.{m_index}"
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise ProtocolError(
                f"{where}.role: Input should be 'user' or 'assistant'", param=f"{where}.role"
            )
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            if role == "assistant" and m_index == last:
                prefill = content.rstrip()
            continue
        if not isinstance(content, list):
            raise ProtocolError(
                f"{where}.content: must be a string or a list of content blocks",
                param=f"{where}.content",
            )
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        only_text = True
        for b_index, block in enumerate(content):
            param = f"{where}.content.{b_index}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind == "image":
                only_text = False
                parts.append(
                    {
                        "type": "image_url",
                        "image_url": {"url": image_url(block.get("source") or {}, param)},
                    }
                )
            elif kind == "tool_use" and role == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    raise ProtocolError(
                        f"{param}: a tool_use block needs 'id' and 'name'.", param=param
                    )
                calls.append(
                    {
                        "id": block["id"],
                        "type": "function",
                        "function": {
                            "name": block["name"],
                            "arguments": orjson.dumps(block.get("input") or {}).decode(),
                        },
                    }
                )
            elif kind == "tool_result" and role == "user":
                if not isinstance(block.get("tool_use_id"), str):
                    raise ProtocolError(
                        f"{param}: a tool_result block needs 'tool_use_id'.", param=param
                    )
                results.append(
                    {
                        "role": "tool",
                        "tool_call_id": block["tool_use_id"],
                        "content": _tool_result_content(block, param),
                    }
                )
            elif kind in ("thinking", "redacted_thinking"):
                continue  # no backend here produces them; history blocks are dropped
            else:
                raise ProtocolError(
                    f"{param}: content block type {kind!r} is not supported by this gateway"
                    + (f" in a {role} message" if kind in ("tool_use", "tool_result") else "")
                    + ".",
                    param=param,
                )
        out.extend(results)
        if calls:
            text = "".join(p["text"] for p in parts if p["type"] == "text")
            out.append({"role": "assistant", "content": text or None, "tool_calls": calls})
            continue
        if not parts:
            continue
        if only_text:
            text = "".join(p["text"] for p in parts)
            out.append({"role": role, "content": text})
            if role == "assistant" and m_index == last:
                prefill = text.rstrip()
        else:
            out.append({"role": role, "content": parts})
    return out, prefill or None


def _tools(req: Any) -> list[dict[str, Any]] | None:
    if not req.tools:
        return None
    tools = []
    for i, tool in enumerate(req.tools):
        kind = tool.get("type")
        if kind not in (None, "custom") or not isinstance(tool.get("name"), str):
            raise ProtocolError(
                f"tools.{i}: only client tools (name, description, input_schema) are supported "
                f"by this gateway, not {kind!r}.",
                param=f"tools.{i}",
            )
        fn: dict[str, Any] = {
            "name": tool["name"],
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            fn["description"] = tool["description"]
        tools.append({"type": "function", "function": fn})
    return tools


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool | None]:
    if not choice:
        return None, None
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise ProtocolError(
        "tool_choice.type must be 'auto', 'any', 'tool' (with 'name') or 'none'.",
        param="tool_choice",
    )


def to_chat(req: Any, *, count_only: bool = False) -> tuple[ChatRequest, str | None]:
    """``(chat request, prefill)`` for a Messages (or count_tokens) request.

    ``count_only``: a one-token, non-streamed request whose ``usage.prompt_tokens`` is the
    prompt's size in the serving backend's own tokenizer and chat template.
    """
    messages, prefill = _messages(req)
    if not messages:
        raise ProtocolError(
            "messages: at least one message with content is required.", param="messages"
        )
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    tools = _tools(req)
    if tools:
        body["tools"] = tools
        choice, parallel = _tool_choice(req.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
        if parallel is not None:
            body["parallel_tool_calls"] = parallel
    if count_only:
        body["max_tokens"] = 1
        return ChatRequest.model_validate(body), None
    body["max_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    fmt = (req.output_config or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise ProtocolError(
                "output_config.format.schema: an object is required.",
                param="output_config.format.schema",
            )
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
        }
    user = (req.metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        body["user"] = user
    if req.stream or req.stop_sequences:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return ChatRequest.model_validate(body), prefill


# --------------------------------------------------------------------------------- answers

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _stop_reason(reader: ChunkReader) -> str:
    if reader.stop_sequence is not None:
        return "stop_sequence"
    if reader.tools and reader.finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return _STOP_REASONS.get(reader.finish_reason or "stop", "end_turn")


def _usage(usage: Any, reader: ChunkReader | None = None, chat: Any = None) -> dict[str, int]:
    """Anthropic usage from chat usage.  When the backend never reported it (a stream cut at
    a stop sequence): output tokens = content chunks received, input tokens = the documented
    estimate of ``chat``'s prompt (:func:`estimate_tokens`)."""
    if usage is None:
        out = reader.chunks_with_content if reader is not None else 0
        return {
            "input_tokens": estimate_tokens(chat) if chat is not None else 0,
            "output_tokens": out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = 0
    if isinstance(details, dict):
        cached = int(details.get("cached_tokens") or 0)
    output = int(getattr(usage, "completion_tokens", 0) or 0)
    if reader is not None and reader.stopped:
        output = reader.chunks_with_content  # the backend's count includes what we cut
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _content(reader: ChunkReader) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reader.text:
        blocks.append({"type": "text", "text": reader.text})
    for tool in reader.tools:
        blocks.append(
            {
                "type": "tool_use",
                "id": tool["id"],
                "name": tool["name"],
                "input": _parse_args(tool["arguments"]),
            }
        )
    return blocks


def _parse_args(text: str) -> Any:
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": text}  # the model wrote invalid JSON: keep it visible
    return value if isinstance(value, dict) else {"value": value}


def message_from_reader(
    reader: ChunkReader, model: str, usage: Any, chat: Any = None
) -> dict[str, Any]:
    """The Messages answer object for everything ``reader`` saw."""
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _content(reader),
        "stop_reason": _stop_reason(reader),
        "stop_sequence": reader.stop_sequence,
        "usage": _usage(usage, reader, chat),
    }


def message_from_chat(response: Any, req: Any, prefill: str | None) -> dict[str, Any]:
    """The Messages answer for a non-streamed chat response."""
    reader = ChunkReader(req.stop_sequences, prefill)
    choice = response.choices[0] if response.choices else None
    if choice is not None:
        reader.feed_message(choice.message, choice.finish_reason)
    return message_from_reader(reader, response.model or req.model, response.usage)


# --------------------------------------------------------------------------------- streams

_TEXT_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'


class MessagesStream(EventStream):
    """Chat chunks -> Anthropic stream events, in Anthropic's order.

    ``message_start`` (content empty) and a ``ping`` with the first chunk; per block
    ``content_block_start``, ``content_block_delta`` (``text_delta`` / ``input_json_delta``),
    ``content_block_stop``; at the end ``message_delta`` (``stop_reason``, ``stop_sequence``,
    ``usage``) and ``message_stop``.  Every frame has its ``event:`` line.
    """

    __slots__ = ("_block", "_chat", "_kind", "_started", "model", "reader", "usage")

    def __init__(self, req: Any, prefill: str | None, chat: Any = None) -> None:
        self.reader = ChunkReader(req.stop_sequences, prefill)
        self._chat = chat  # for the input estimate when the backend's usage never comes
        self.model = req.model
        self._started = False
        self._block = -1  # index of the open block, -1: none
        self._kind: str | None = None  # "text" or "tool_use"
        self.usage: Any = None

    @property
    def stopped(self) -> bool:
        """A stop sequence ended the answer: the caller should close the upstream."""
        return self.reader.stopped

    def start(self, model: str | None) -> bytes:
        self._started = True
        if model:
            self.model = model
        message = {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return sse("message_start", {"type": "message_start", "message": message}) + _PING

    def _frames(self, steps: list[Step]) -> bytes:
        frames: list[bytes] = []
        for step in steps:
            kind = step[0]
            if kind == "text":
                if self._kind != "text":
                    self._open(frames, {"type": "text", "text": ""})
                    self._kind = "text"
                frames.append(
                    _TEXT_DELTA_HEAD
                    + b"%d" % self._block
                    + b',"delta":{"type":"text_delta","text":'
                    + orjson.dumps(step[1])
                    + b"}}\n\n"
                )
            elif kind == "tool":
                self._open(
                    frames, {"type": "tool_use", "id": step[2], "name": step[3], "input": {}}
                )
                self._kind = "tool_use"
            else:  # args
                frames.append(
                    sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self._block,
                            "delta": {"type": "input_json_delta", "partial_json": step[2]},
                        },
                    )
                )
        return b"".join(frames)

    def _open(self, frames: list[bytes], block: dict[str, Any]) -> None:
        self._close(frames)
        self._block += 1
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        frames.append(sse("content_block_start", start))

    def _close(self, frames: list[bytes]) -> None:
        if self._kind is not None:
            frames.append(
                sse("content_block_stop", {"type": "content_block_stop", "index": self._block})
            )
            self._kind = None

    def end(self) -> bytes:
        """The closing frames: the open block's stop, ``message_delta``, ``message_stop``."""
        frames: list[bytes] = [] if self._started else [self.start(None)]
        tail = self.reader.close()
        if tail:
            frames.append(self._frames(tail))
        self._close(frames)
        frames.append(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": _stop_reason(self.reader),
                        "stop_sequence": self.reader.stop_sequence,
                    },
                    "usage": _usage(self.usage, self.reader, self._chat),
                },
            )
        )
        frames.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        return b"".join(frames)


# ---------------------------------------------------------------------------------- errors

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

ErrorAnswer = tuple[int, bytes, list[tuple[bytes, bytes]]]


def error_payload(status: int, message: str) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` for ``status``."""
    kind = _TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_for(
    exc: BaseException,
    redact: Callable[[str], str] | None = None,
    openai_error: Callable[..., ErrorAnswer] | None = None,
) -> ErrorAnswer:
    """``(status, body, headers)`` in Anthropic's shape for ``exc``.

    Statuses are the chat route's (so metrics, retries and ``Retry-After`` agree) except that
    "no backend could serve" (503) is Anthropic's 529 ``overloaded_error``; the headers
    (``retry-after``, ``x-should-retry``) are the chat route's.  ``openai_error`` is the
    gateway's OpenAI-shaped ``error_for`` whose status and headers are reused.
    """
    if isinstance(exc, ProtocolError):
        message = redact(exc.message) if redact else exc.message
        return exc.status, orjson.dumps(error_payload(exc.status, message)), []
    status, body, headers = (
        openai_error(exc, redact) if openai_error is not None else (500, b"{}", [])
    )
    try:
        message = orjson.loads(body)["error"]["message"]
    except Exception:
        message = "The gateway failed to process the request."
    if status == 503:
        status = 529
    return status, orjson.dumps(error_payload(status, message)), headers


def stream_error(
    exc: BaseException,
    redact: Callable[[str], str] | None,
    openai_error: Callable[..., ErrorAnswer],
) -> bytes:
    """The ``error`` event that ends a stream cut after its first byte."""
    _status, body, _headers = error_for(exc, redact, openai_error)
    return b"event: error\ndata: " + body + b"\n\n"


def estimate_tokens(chat: ChatRequest) -> int:
    """A documented estimate of a prompt's tokens when no backend counted them: the UTF-8
    size of the messages and tools as JSON, divided by 4 (at least 1)."""
    size = len(orjson.dumps([m.to_dict() for m in chat.messages]))
    if chat.tools:
        size += len(orjson.dumps(chat.tools))
    return max(1, size // 4)
