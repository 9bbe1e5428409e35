"""Pure translation between the OpenAI wire format and Ollama's native API (no I/O here).

Requests: :func:`chat_body`, :func:`embed_body`.  Responses: :func:`chat_response`,
:class:`StreamTranslator` (one NDJSON line in, zero or more OpenAI chunks out),
:func:`embedding_response`, :func:`model_info`.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
import uuid
from datetime import datetime
from typing import Any

from inference_core import (
    BackendConfig,
    BadRequest,
    CapabilityNotSupported,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ConfigError,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelInfo,
    Usage,
)

#: OpenAI request fields mapped onto Ollama ``options`` under the same name.
_SAME_NAME = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
#: Request extras (not OpenAI fields) that are Ollama sampling/runtime options as they are.
PASSTHROUGH_OPTIONS = (
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "num_keep",
    "num_batch",
    "num_gpu",
    "num_thread",
    "penalize_newline",
)


#: What a client may set in Ollama ``options`` (natively, or as request extras): sampling only.
#: Server-resource options (num_gpu, num_thread, num_batch, main_gpu, use_mmap, use_mlock,
#: low_vram, numa, ...) belong to the operator: a client sending one gets a 400.
CLIENT_OPTIONS = frozenset(
    {*_SAME_NAME, *PASSTHROUGH_OPTIONS, "stop", "num_predict", "num_ctx"}
    - {"num_batch", "num_gpu", "num_thread"}
)
#: Defaults of the caps (INFERENCE_<NAME>_MAX_PREDICT / MAX_NUM_CTX / MAX_KEEP_ALIVE).
MAX_PREDICT_DEFAULT = 8192
MAX_NUM_CTX_DEFAULT = 32768
MAX_KEEP_ALIVE_DEFAULT = "30m"
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def duration_seconds(value: Any) -> float | None:
    """Ollama's ``keep_alive`` in seconds: a number (seconds) or a Go duration (``"1h30m"``);
    negative means forever; None when it cannot be read."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        return None
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


def _caps(config: BackendConfig) -> tuple[int, int, float | None]:
    """(max num_predict, max num_ctx, max keep_alive seconds or None for no cap)."""
    max_predict = config.option_int("max_predict", MAX_PREDICT_DEFAULT, minimum=1)
    num_ctx = config.option_int("num_ctx", minimum=1)
    max_ctx = config.option_int("max_num_ctx", num_ctx or MAX_NUM_CTX_DEFAULT, minimum=1)
    operator = config.option("keep_alive")
    cap_text = config.option("max_keep_alive") or (operator or MAX_KEEP_ALIVE_DEFAULT)
    cap = duration_seconds(cap_text)
    if cap is None:
        variable = config.option_variable("max_keep_alive")
        raise ConfigError(
            f"{variable} is invalid: {cap_text!r} is not a duration (accepted: seconds, or a "
            "duration such as 30m or 1h)",
            variable=variable,
        )
    return max_predict, max_ctx, None if cap < 0 else cap


def _client_keep_alive(value: Any, cap: float | None, backend: str) -> Any:
    """A client's keep_alive within the operator's cap (negative = forever = the cap)."""
    seconds = duration_seconds(keep_alive_value(value))
    if seconds is None:
        raise BadRequest(
            f"keep_alive {value!r} is not a duration (seconds, or e.g. 10m)",
            backend=backend,
            param="keep_alive",
        )
    if cap is not None and (seconds < 0 or seconds > cap):
        return int(cap) if float(cap).is_integer() else cap
    return keep_alive_value(value)


def _check_client_options(native: dict[str, Any], backend: str) -> None:
    refused = sorted(k for k in native if k not in CLIENT_OPTIONS)
    if refused:
        raise BadRequest(
            f"Ollama options {', '.join(refused)} are set by the gateway's operator, not by "
            f"clients (clients may set: {', '.join(sorted(CLIENT_OPTIONS))})",
            backend=backend,
            param="options",
        )


def _bounded(options: dict[str, Any], config: BackendConfig) -> None:
    """Apply the caps to ``options`` in place: num_predict always bounded (Ollama's own
    default, -1, generates until the context is full, and with context shifting forever),
    num_ctx at most the cap."""
    max_predict, max_ctx, _ = _caps(config)
    predict = options.get("num_predict")
    if not isinstance(predict, int) or isinstance(predict, bool) or not 0 < predict <= max_predict:
        options["num_predict"] = max_predict
    ctx = options.get("num_ctx")
    if ctx is not None:
        if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx < 1:
            raise BadRequest(
                f"num_ctx {ctx!r} is not a positive whole number", backend=config.name,
                param="num_ctx",
            )  # fmt: skip
        options["num_ctx"] = min(ctx, max_ctx)


def keep_alive_value(value: Any) -> Any:
    """``"10m"`` stays a duration; ``"0"`` / ``"-1"`` / ``"300"`` become numbers (seconds)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text
    return value


def _keep_alive(extras: dict[str, Any], config: BackendConfig) -> Any:
    """The operator's keep_alive, or a client's within the cap (MAX_KEEP_ALIVE, else the
    operator's own value, else 30m)."""
    value = extras.get("keep_alive")
    if value not in (None, ""):
        return _client_keep_alive(value, _caps(config)[2], config.name)
    value = config.option("keep_alive")
    return keep_alive_value(value) if value not in (None, "") else None


# -------------------------------------------------------------------------------- messages


def _image(part: dict[str, Any], backend: str) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise CapabilityNotSupported(
            "Ollama takes images inline only (data: URLs with base64); it cannot fetch an "
            "image URL",
            backend=backend,
        )
    header, _, data = url.partition(",")
    if ";base64" not in header or not data:
        raise BadRequest("an image data URL must be base64-encoded", backend=backend)
    return data


def _arguments(raw: Any, backend: str) -> dict[str, Any]:
    """OpenAI's JSON-string tool arguments as the object Ollama wants."""
    if isinstance(raw, dict):
        return raw
    if raw in (None, ""):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise BadRequest(
            "tool call arguments must be a JSON object string", backend=backend, param="messages"
        ) from None
    if not isinstance(value, dict):
        raise BadRequest(
            "tool call arguments must be a JSON object", backend=backend, param="messages"
        )
    return value


def messages(request: ChatRequest, backend: str) -> list[dict[str, Any]]:
    """OpenAI messages as Ollama messages (text joined, images inlined, tool calls as objects)."""
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for msg in request.messages:
        item: dict[str, Any] = {"role": msg.role}
        content = msg.content
        if isinstance(content, list):
            texts, images = [], []
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    texts.append(part.get("text") or "")
                elif kind == "image_url":
                    images.append(_image(part, backend))
                else:
                    raise CapabilityNotSupported(
                        f"Ollama cannot take {kind!r} message parts", backend=backend
                    )
            item["content"] = "\n".join(texts)
            if images:
                item["images"] = images
        else:
            item["content"] = content or ""
        if msg.tool_calls:
            calls = []
            for call in msg.tool_calls:
                fn = call.get("function") or {}
                name = fn.get("name")
                if call.get("id") and name:
                    tool_names[call["id"]] = name
                calls.append(
                    {
                        "function": {
                            "name": name,
                            "arguments": _arguments(fn.get("arguments"), backend),
                        }
                    }
                )
            item["tool_calls"] = calls
        if msg.role == "tool":
            if msg.tool_call_id:
                item["tool_call_id"] = msg.tool_call_id
                if msg.tool_call_id in tool_names:
                    item["tool_name"] = tool_names[msg.tool_call_id]
            if msg.name and "tool_name" not in item:
                item["tool_name"] = msg.name
        out.append(item)
    return out


# --------------------------------------------------------------------------------- requests


def _format(request: ChatRequest, extras: dict[str, Any]) -> Any:
    if "format" in extras:
        return extras["format"]
    fmt = request.response_format or {}
    kind = fmt.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest(
                "response_format json_schema needs json_schema.schema",
                param="response_format",
            )
        return schema
    return None


def chat_body(request: ChatRequest, config: BackendConfig) -> dict[str, Any]:
    """The ``POST /api/chat`` body for an OpenAI chat request."""
    backend = config.name
    if (request.n or 1) > 1:
        raise CapabilityNotSupported(
            "Ollama returns one choice per request (n > 1)", backend=backend
        )
    extras = dict(request.model_extra or {})
    options: dict[str, Any] = {}
    if request.token_limit is not None:
        options["num_predict"] = request.token_limit
    for key in _SAME_NAME:
        value = getattr(request, key)
        if value is not None:
            options[key] = value
    if request.stop is not None:
        options["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    for key in PASSTHROUGH_OPTIONS:
        if extras.get(key) is not None:
            options[key] = extras[key]
    num_ctx = extras.get("num_ctx")
    if num_ctx is None:
        num_ctx = config.option_int("num_ctx", minimum=1)
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    native = extras.get("options")
    if isinstance(native, dict):  # Ollama-native options from an Ollama-aware client win...
        _check_client_options(native, backend)
        options.update(native)
    _bounded(options, config)  # ...within the gateway's caps

    body: dict[str, Any] = {
        "model": config.model_for(request.model),
        "messages": messages(request, backend),
        "stream": request.stream,
    }
    if options:
        body["options"] = options
    fmt = _format(request, extras)
    if fmt is not None:
        body["format"] = fmt
    tools = _tools(request, backend)
    if tools:
        body["tools"] = tools
    keep_alive = _keep_alive(extras, config)
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    think = extras.get("think", extras.get("reasoning_effort"))
    if think is not None:
        body["think"] = think
    return body


def _tools(request: ChatRequest, backend: str) -> list[dict[str, Any]] | None:
    """The tools to send, as far as Ollama can express the request's ``tool_choice``.

    Ollama's native API has no ``tool_choice``: ``auto`` (or none) sends the tools, ``none``
    sends none; ``required`` or a named function would need a forced call, which Ollama
    cannot make, so it is :class:`CapabilityNotSupported` (the router falls back to a
    backend that can; with none left the client gets a 400 saying so), never silently auto.
    """
    tools = request.tools
    choice = request.tool_choice
    if not tools or choice == "none":
        return None
    if choice not in (None, "auto"):
        wanted = "required" if choice == "required" else "a named function"
        raise CapabilityNotSupported(
            f"Ollama cannot force a tool call (tool_choice {wanted}); use tool_choice "
            '"auto" or "none", or a backend that supports it',
            backend=backend,
        )
    return [t for t in tools if t.get("type", "function") == "function"]


def embed_model_for(config: BackendConfig, requested: str | None) -> str:
    """The embeddings model: an alias entry, the requested name, or for ``default`` the
    ``EMBED_MODEL`` option (else the backend's default model)."""
    return config.model_for(requested, default=config.option("embed_model"))


def embed_body(request: EmbeddingRequest, config: BackendConfig) -> dict[str, Any]:
    """The ``POST /api/embed`` body: every input in one batched call."""
    inputs = request.inputs
    if not all(isinstance(item, str) for item in inputs):
        raise CapabilityNotSupported("Ollama embeds text, not token-id arrays", backend=config.name)
    extras = dict(request.model_extra or {})
    body: dict[str, Any] = {"model": embed_model_for(config, request.model), "input": inputs}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if "truncate" in extras:
        body["truncate"] = extras["truncate"]
    keep_alive = _keep_alive(extras, config)
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    num_ctx = extras.get("num_ctx")
    if num_ctx is None:
        num_ctx = config.option_int("num_ctx", minimum=1)
    if num_ctx is not None:
        options = {"num_ctx": num_ctx}
        _bounded(options, config)
        options.pop("num_predict", None)  # nothing is generated
        body["options"] = options
    return body


# -------------------------------------------------------------------------------- responses


def finish_reason(done_reason: str | None, tool_calls: bool) -> str:
    """Ollama's ``done_reason`` as OpenAI's ``finish_reason``.

    ``length`` stays; a reply that called tools is ``tool_calls``; ``stop`` and the
    housekeeping reasons ``load`` / ``unload`` (no generation happened) are ``stop``.
    """
    if tool_calls:
        return "tool_calls"
    if done_reason == "length":
        return "length"
    return "stop"


def usage(data: dict[str, Any]) -> Usage:
    # prompt_eval_count is absent when the whole prompt came from Ollama's cache
    prompt = int(data.get("prompt_eval_count") or 0)
    completion = int(data.get("eval_count") or 0)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def created_at(data: dict[str, Any]) -> int:
    raw = data.get("created_at")
    if isinstance(raw, str):
        try:
            return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(time.time())


def new_id(prefix: str = "chatcmpl-") -> str:
    return prefix + uuid.uuid4().hex[:24]


def tool_calls(calls: list[dict[str, Any]] | None, *, start: int = 0, stream: bool = False):
    """Ollama tool calls (arguments as objects) as OpenAI ones (ids, JSON-string arguments)."""
    out = []
    for i, call in enumerate(calls or ()):
        fn = call.get("function") or {}
        item: dict[str, Any] = {
            "id": call.get("id") or new_id("call_"),
            "type": "function",
            "function": {
                "name": fn.get("name"),
                "arguments": json.dumps(fn.get("arguments") or {}, ensure_ascii=False),
            },
        }
        if stream:
            item = {"index": start + i, **item}
        out.append(item)
    return out


def chat_response(data: dict[str, Any]) -> ChatResponse:
    """A non-streamed ``/api/chat`` answer as a ``chat.completion``."""
    msg = data.get("message") or {}
    calls = tool_calls(msg.get("tool_calls"))
    message: dict[str, Any] = {
        "role": msg.get("role") or "assistant",
        "content": msg.get("content") or "",
    }
    if calls:
        message["tool_calls"] = calls
        message["content"] = message["content"] or None
    if msg.get("thinking"):
        message["reasoning_content"] = msg["thinking"]
    return ChatResponse.model_validate(
        {
            "id": new_id(),
            "created": created_at(data),
            "model": data.get("model") or "",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": finish_reason(data.get("done_reason"), bool(calls)),
                }
            ],
            "usage": usage(data),
        }
    )


class StreamTranslator:
    """Turns the NDJSON lines of one ``/api/chat`` stream into OpenAI chunks.

    The first chunk carries ``role: "assistant"``; the ``done`` line becomes a chunk with an
    empty delta and the ``finish_reason``, then (``include_usage``) a ``choices: []`` chunk
    with the usage.  ``done`` is true once the final line was seen.
    """

    def __init__(self, *, include_usage: bool) -> None:
        self.id = new_id()
        self.include_usage = include_usage
        self.created: int | None = None
        self.model = ""
        self.first = True
        self.calls = 0
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return ChatChunk.model_validate(
            {
                "id": self.id,
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    def feed(self, data: dict[str, Any]) -> list[ChatChunk]:
        if self.created is None:
            self.created = created_at(data)
            self.model = data.get("model") or ""
        msg = data.get("message") or {}
        delta: dict[str, Any] = {}
        if self.first:
            delta["role"] = "assistant"
        if msg.get("content") or self.first:
            delta["content"] = msg.get("content") or ""
        if msg.get("thinking"):
            delta["reasoning_content"] = msg["thinking"]
        if msg.get("tool_calls"):
            calls = tool_calls(msg["tool_calls"], start=self.calls, stream=True)
            self.calls += len(calls)
            delta["tool_calls"] = calls
        out = []
        if delta and (not data.get("done") or len(delta) > 1 or delta.get("content")):
            out.append(self._chunk(delta))
            self.first = False
        if data.get("done"):
            self.done = True
            out.append(self._chunk({}, finish_reason(data.get("done_reason"), self.calls > 0)))
            if self.include_usage:
                out.append(
                    ChatChunk.model_validate(
                        {
                            "id": self.id,
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": usage(data).model_dump(),
                        }
                    )
                )
        return out


def embedding_response(
    data: dict[str, Any], request: EmbeddingRequest, model: str
) -> EmbeddingResponse:
    """``/api/embed``'s answer as OpenAI embeddings (base64 encoded here when asked)."""
    vectors = data.get("embeddings") or []
    b64 = request.encoding_format == "base64"
    items = []
    for i, vec in enumerate(vectors):
        value: list[float] | str = vec
        if b64:
            value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        items.append(Embedding(index=i, embedding=value))
    tokens = int(data.get("prompt_eval_count") or 0)
    return EmbeddingResponse(
        data=items,
        model=data.get("model") or model,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )


def model_info(entry: dict[str, Any], backend: str) -> ModelInfo:
    """One ``/api/tags`` entry as a model of ``/v1/models``."""
    name = entry.get("model") or entry.get("name") or ""
    created = 0
    modified = entry.get("modified_at")
    if isinstance(modified, str):
        try:
            created = int(datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp())
        except ValueError:
            created = 0
    info = ModelInfo(id=name, created=created, owned_by="ollama", backend=backend)
    details = entry.get("details")
    if isinstance(details, dict):
        info.details = details  # type: ignore[attr-defined]  # extra field, kept for clients
    return info


def same_model(a: str, b: str) -> bool:
    """``llama3.2`` and ``llama3.2:latest`` name the same model."""

    def norm(name: str) -> str:
        return name if ":" in name else name + ":latest"

    return norm(a) == norm(b)
