"""The OpenAI Responses API (``POST /v1/responses``) over chat completions.

Request (:class:`ResponsesRequest`) -> :func:`to_chat` -> a chat request:

* ``instructions`` -> the first ``system`` message (not carried over by
  ``previous_response_id``, as at OpenAI);
* ``input``: a string (one user message) or items: messages (``user``/``system``/``developer``
  (-> ``system``)/``assistant``, content as a string or ``input_text``/``output_text``/
  ``input_image`` parts), ``function_call`` (-> the assistant's ``tool_calls``, ``call_id`` as
  the call's id) and ``function_call_output`` (-> a ``tool`` message whose ``tool_call_id`` is
  the ``call_id`` exactly); ``reasoning`` items are dropped; other item types are a 400;
* ``previous_response_id``: the stored conversation (its input and output items) goes first;
  unknown or expired -> 400 ``previous_response_not_found``, never a silent drop;
* ``tools`` (function tools only), ``tool_choice``, ``parallel_tool_calls``,
  ``max_output_tokens`` -> ``max_tokens``, ``temperature``, ``top_p``, ``user``,
  ``text.format`` (``json_schema`` / ``json_object``) -> ``response_format``.

Answer: a ``response`` object (``resp_...``) whose ``output`` holds a ``message`` item
(``output_text``) and/or ``function_call`` items; ``status: "incomplete"`` with
``incomplete_details.reason: "max_output_tokens"`` when the backend stopped at the limit.
Stream: :class:`ResponsesStream` (semantic events with ``sequence_number``, ``output_index``
and ``content_index``).  Errors keep OpenAI's shape (the gateway's ``error_for``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..models import ChatRequest
from ._common import EventStream, ProtocolError, new_id, sse
from .chunks import ChunkReader, Step
from .store import StoredResponse

__all__ = [
    "ResponsesRequest",
    "ResponsesStream",
    "parse_request",
    "response_from_chat",
    "response_from_reader",
    "to_chat",
]


class ResponsesRequest(BaseModel):
    """The body of ``POST /v1/responses`` (unknown fields accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(default="default", min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: dict[str, Any] | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    background: bool | None = None


def parse_request(body: bytes) -> ResponsesRequest:
    """Validate a body; a :class:`ProtocolError` naming the first bad field otherwise."""
    try:
        req = ResponsesRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            raise ProtocolError(
                f"We could not parse the JSON body of your request: {first.get('msg')}",
                code="invalid_json",
            ) from None
        loc = ".".join(str(p) for p in first.get("loc", ()))
        if not loc:
            raise ProtocolError("The request body must be a JSON object.") from None
        code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_value"
        raise ProtocolError(
            f"Invalid value for '{loc}': {first.get('msg')}", param=loc, code=code
        ) from None
    if req.background:
        raise ProtocolError(
            "background responses are not supported by this gateway.", param="background"
        )
    return req


# ---------------------------------------------------------------------------------- requests


def _content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ProtocolError(
            f"Invalid value for '{param}': a string or a list of parts.", param=param
        )
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"{param}.{i}"
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise ProtocolError(
                f"Invalid value for '{where}': content part {kind!r} is not supported by this "
                "gateway (input_text, output_text and input_image with an image_url are).",
                param=where,
            )
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    return list(req.input)


def input_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses items (input, or stored input + output) as chat messages."""
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input.{i}"
        kind = item.get("type")
        if kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise ProtocolError(
                    f"Invalid value for '{where}': a function_call needs 'call_id' and 'name'.",
                    param=where,
                )
            args = item.get("arguments")
            call = {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args
                    if isinstance(args, str)
                    else orjson.dumps(args or {}).decode(),
                },
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and not last.get("_closed"):
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise ProtocolError(
                    f"Invalid value for '{where}.call_id': required.", param=f"{where}.call_id"
                )
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output or [], f"{where}.output")
            if not isinstance(text, str):
                raise ProtocolError(
                    f"Invalid value for '{where}.output': text only.", param=f"{where}.output"
                )
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind == "reasoning":
            continue
        elif kind in (None, "message") and "role" in item:
            role = item["role"]
            if role not in ("user", "system", "developer", "assistant"):
                raise ProtocolError(
                    f"Invalid value for '{where}.role': {role!r}.", param=f"{where}.role"
                )
            out.append(
                {
                    "role": "system" if role == "developer" else role,
                    "content": _content(item.get("content", ""), f"{where}.content"),
                }
            )
        else:
            raise ProtocolError(
                f"Invalid value for '{where}.type': input item {kind!r} is not supported by "
                "this gateway (messages, function_call, function_call_output are).",
                param=f"{where}.type",
            )
    return out


def _tools(req: ResponsesRequest) -> list[dict[str, Any]] | None:
    if not req.tools:
        return None
    tools = []
    for i, tool in enumerate(req.tools):
        if tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            raise ProtocolError(
                f"Invalid value for 'tools.{i}': only function tools are supported by this "
                f"gateway, not {tool.get('type')!r}.",
                param=f"tools.{i}",
            )
        fn: dict[str, Any] = {
            "name": tool["name"],
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            fn["description"] = tool["description"]
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        tools.append({"type": "function", "function": fn})
    return tools


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise ProtocolError(
        "Invalid value for 'tool_choice': 'auto', 'none', 'required' or "
        "{'type': 'function', 'name': ...}.",
        param="tool_choice",
    )


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise ProtocolError(
        "Invalid value for 'text.format': 'text', 'json_object' or 'json_schema' with a 'schema'.",
        param="text.format",
    )


def to_chat(
    req: ResponsesRequest, previous: StoredResponse | None
) -> tuple[ChatRequest, list[dict[str, Any]]]:
    """``(chat request, items)``: ``items`` is the conversation so far as Responses items (the
    previous response's stored items, then this input; no instructions), to store with the
    answer's output items."""
    items = list(previous.items) if previous is not None else []
    items.extend(input_items(req))
    messages = input_messages(items)
    if req.instructions:
        messages.insert(0, {"role": "system", "content": req.instructions})
    if not messages:
        raise ProtocolError("Invalid value for 'input': it is empty.", param="input")
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    tools = _tools(req)
    if tools:
        body["tools"] = tools
        choice = _tool_choice(req.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_output_tokens is not None:
        body["max_tokens"] = req.max_output_tokens
    for name in ("temperature", "top_p", "user"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    fmt = _response_format(req.text)
    if fmt is not None:
        body["response_format"] = fmt
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return ChatRequest.model_validate(body), items


# --------------------------------------------------------------------------------- answers


def _usage(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    output = int(getattr(usage, "completion_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


def envelope(
    rid: str,
    req: ResponsesRequest,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: Any = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object around ``output``."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls
        if req.parallel_tool_calls is not None
        else True,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": req.store,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": req.text or {"format": {"type": "text"}},
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": req.tools or [],
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "truncation": "disabled",
        "usage": _usage(usage),
        "user": req.user,
        "metadata": req.metadata or {},
    }


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(item_id: str, tool: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": tool["id"],
        "name": tool["name"],
        "arguments": tool["arguments"],
    }


def _status(reader: ChunkReader) -> str:
    return "incomplete" if reader.finish_reason == "length" else "completed"


def response_from_reader(
    reader: ChunkReader, req: ResponsesRequest, rid: str, created: int, model: str, usage: Any
) -> dict[str, Any]:
    """The ``response`` object for everything ``reader`` saw (non-streamed answers)."""
    output: list[dict[str, Any]] = []
    if reader.text or not reader.tools:
        output.append(_message_item(new_id("msg_"), reader.text))
    output.extend(_call_item(new_id("fc_"), t) for t in reader.tools)
    return envelope(rid, req, created, model, _status(reader), output, usage)


def response_from_chat(
    response: Any, req: ResponsesRequest, rid: str
) -> tuple[dict[str, Any], ChunkReader]:
    """``(response object, reader)`` for a non-streamed chat response."""
    reader = ChunkReader()
    choice = response.choices[0] if response.choices else None
    if choice is not None:
        reader.feed_message(choice.message, choice.finish_reason)
    created = int(getattr(response, "created", 0) or time.time())
    obj = response_from_reader(
        reader, req, rid, created, response.model or req.model, response.usage
    )
    return obj, reader


# --------------------------------------------------------------------------------- streams

_TEXT_DELTA_HEAD = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"'


class ResponsesStream(EventStream):
    """Chat chunks -> Responses stream events.

    ``response.created``, ``response.in_progress``; per output item
    ``response.output_item.added``, then for a message ``response.content_part.added``,
    ``response.output_text.delta``..., ``response.output_text.done``,
    ``response.content_part.done``, or for a function call
    ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``;
    then ``response.output_item.done``; at the end ``response.completed`` (or
    ``response.incomplete`` when cut by ``max_output_tokens``).  Every event carries
    ``sequence_number``; item and part events ``output_index`` (and ``content_index``).
    """

    __slots__ = (
        "_open",
        "_seq",
        "_started",
        "created",
        "items",
        "model",
        "reader",
        "req",
        "rid",
        "usage",
    )

    def __init__(self, req: ResponsesRequest, rid: str) -> None:
        self.req = req
        self.rid = rid
        self.reader = ChunkReader()
        self.model = req.model
        self.created = int(time.time())
        self.items: list[dict[str, Any]] = []  # output items, as they will be in the response
        self._open: dict[str, Any] | None = None  # {"kind", "index", "id", "tool"?}
        self._seq = 0
        self._started = False
        self.usage: Any = None

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": kind, **payload, "sequence_number": self._seq}
        self._seq += 1
        return sse(kind, payload)

    def envelope(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: Any = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return envelope(self.rid, self.req, self.created, self.model, status, output, usage, error)

    def start(self, model: str | None) -> bytes:
        self._started = True
        if model:
            self.model = model
        head = self.envelope("in_progress", [])
        return self._event("response.created", {"response": head}) + self._event(
            "response.in_progress", {"response": head}
        )

    def _frames(self, steps: list[Step]) -> bytes:
        frames: list[bytes] = []
        for step in steps:
            kind = step[0]
            if kind == "text":
                opened = self._open
                if opened is None or opened["kind"] != "message":
                    opened = self._open_message(frames)
                opened["parts"].append(step[1])
                frames.append(
                    opened["head"]
                    + orjson.dumps(step[1])
                    + b',"logprobs":[],"sequence_number":%d}\n\n' % self._seq
                )
                self._seq += 1
            elif kind == "tool":
                self._close(frames)
                tool = self.reader.tools[step[1]]
                index = len(self.items)
                item_id = new_id("fc_")
                self.items.append({})
                self._open = {"kind": "call", "index": index, "id": item_id, "tool": tool}
                frames.append(
                    self._event(
                        "response.output_item.added",
                        {
                            "output_index": index,
                            "item": {**_call_item(item_id, tool, "in_progress"), "arguments": ""},
                        },
                    )
                )
            else:  # args
                opened = self._open
                if opened is None or opened["kind"] != "call":
                    continue  # pieces of a call that is already closed: in its final arguments
                frames.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        {
                            "item_id": opened["id"],
                            "output_index": opened["index"],
                            "delta": step[2],
                        },
                    )
                )
        return b"".join(frames)

    def _open_message(self, frames: list[bytes]) -> dict[str, Any]:
        self._close(frames)
        index = len(self.items)
        item_id = new_id("msg_")
        self.items.append({})
        head = b',"item_id":"%s","output_index":%d,"content_index":0,"delta":' % (
            item_id.encode(),
            index,
        )
        opened = {
            "kind": "message",
            "index": index,
            "id": item_id,
            "parts": [],
            "head": _TEXT_DELTA_HEAD + head,
        }
        self._open = opened
        item = {**_message_item(item_id, "", "in_progress"), "content": []}
        frames.append(
            self._event("response.output_item.added", {"output_index": index, "item": item})
        )
        frames.append(
            self._event(
                "response.content_part.added",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                },
            )
        )
        return opened

    def _close(self, frames: list[bytes]) -> None:
        opened = self._open
        if opened is None:
            return
        self._open = None
        index, item_id = opened["index"], opened["id"]
        if opened["kind"] == "message":
            text = "".join(opened["parts"])
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            frames.append(
                self._event(
                    "response.output_text.done",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    },
                )
            )
            frames.append(
                self._event(
                    "response.content_part.done",
                    {"item_id": item_id, "output_index": index, "content_index": 0, "part": part},
                )
            )
            item = _message_item(item_id, text)
        else:
            tool = opened["tool"]
            frames.append(
                self._event(
                    "response.function_call_arguments.done",
                    {
                        "item_id": item_id,
                        "output_index": index,
                        "name": tool["name"],
                        "arguments": tool["arguments"],
                    },
                )
            )
            item = _call_item(item_id, tool)
        self.items[index] = item
        frames.append(
            self._event("response.output_item.done", {"output_index": index, "item": item})
        )

    def end(self) -> tuple[bytes, dict[str, Any]]:
        """``(closing frames, the final response object)``."""
        frames: list[bytes] = [] if self._started else [self.start(None)]
        tail = self.reader.close()
        if tail:
            frames.append(self._frames(tail))
        if not self.items:  # an empty answer is one empty message, as at OpenAI
            self._open_message(frames)
        self._close(frames)
        status = _status(self.reader)
        final = self.envelope(status, list(self.items), self.usage)
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        frames.append(self._event(kind, {"response": final}))
        return b"".join(frames), final

    def error(self, status: int, body: bytes) -> bytes:
        """``error`` then ``response.failed``, for a stream cut after its first byte."""
        try:
            err = orjson.loads(body)["error"]
        except Exception:
            err = {"message": "The stream failed.", "type": "server_error", "code": None}
        code = err.get("code") or err.get("type") or "server_error"
        frames = [b"" if self._started else self.start(None)]
        frames.append(
            self._event(
                "error", {"code": code, "message": err.get("message"), "param": err.get("param")}
            )
        )
        failed = self.envelope(
            "failed",
            [i for i in self.items if i],
            error={"code": code, "message": err.get("message")},
        )
        frames.append(self._event("response.failed", {"response": failed}))
        return b"".join(frames)
