"""A protocol-faithful fake of the OpenAI HTTP API (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/models``), built from PROTOCOLS.md section 5.

What it does like the real service: OpenAI-shaped error bodies with the real ``type``/``code``
values, ``Retry-After`` on 429, SSE chunks ending in ``data: [DONE]``, the role-only first chunk,
``usage: null`` on every chunk and a final ``choices: []`` usage chunk when
``stream_options.include_usage`` is set, tool calls streamed as ``index``-keyed argument pieces,
``finish_reason: "length"`` when ``max_tokens`` cuts the reply, base64 embeddings as
little-endian float32, ``dimensions`` honoured.  Bearer auth is enforced when ``api_key`` is set.
"""

from __future__ import annotations

import time
from typing import Any

from ._base import (
    CONTEXT_LENGTH,
    GARBAGE,
    MIDSTREAM_ERROR,
    RESET,
    STATUS_BEHAVIOURS,
    TOOL_CALL,
    TRUNCATED,
    FakeServer,
    RecordedRequest,
    count_tokens,
    dumps,
    fake_vector,
    floats_to_base64,
    pieces,
)

_ERRORS: dict[int, tuple[str, str, str | None, str | None]] = {
    # status: (message, type, param, code)
    400: ("Invalid value for 'messages' (fake).", "invalid_request_error", "messages", None),
    401: (
        "Incorrect API key provided: sk-fa****ake. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        "invalid_api_key",
    ),
    403: (
        "Country, region, or territory not supported",
        "request_forbidden",
        None,
        "unsupported_country_region_territory",
    ),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        None,
        "model_not_found",
    ),
    409: ("Conflict (fake).", "invalid_request_error", None, None),
    422: ("Unprocessable entity (fake).", "invalid_request_error", None, None),
    429: (
        "Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, "
        "Requested 1. Please try again in 1s.",
        "requests",
        None,
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    ),
    502: ("Bad gateway.", "server_error", None, None),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        None,
    ),
    504: ("Gateway timeout.", "server_error", None, None),
}

_CONTEXT_ERROR = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted in "
    "130000 tokens. Please reduce the length of the messages.",
    "invalid_request_error",
    "messages",
    "context_length_exceeded",
)


class FakeOpenAIServer(FakeServer):
    """The fake OpenAI API. ``base_url`` (``url + "/v1"``) is what an OpenAI client wants.

    Extra knobs: ``models`` (what ``/v1/models`` lists), ``strict_models`` (when true, a model
    not in ``models`` gets the real 404 ``model_not_found``; default false so any name works),
    ``system_fingerprint``.
    """

    def __init__(
        self,
        *,
        models: list[str] | None = None,
        strict_models: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.models = models or ["gpt-4o-mini", "text-embedding-3-small"]
        self.strict_models = strict_models
        self.system_fingerprint = "fp_fake"
        #: send ``data: [DONE]`` after an in-band error event (text-generation-webui does)
        self.done_after_error = False

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the OpenAI SDK's ``base_url``."""
        return self.url + "/v1"

    # -- pieces subclasses (textgen) adjust

    def served_model(self, requested: str | None) -> str:
        """The model name a response reports."""
        return requested or "unknown"

    def check_auth(self, rec: RecordedRequest) -> Any | None:
        """A 401 response when the key is wrong, else None."""
        if self.api_key and rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error_response(401, rec)
        return None

    def check_request(self, rec: RecordedRequest) -> Any | None:
        """A validation error response for a request the real server refuses, else None."""
        body = rec.json if isinstance(rec.json, dict) else None
        if body is None:
            return self.error_response(
                400, rec, message="We could not parse the JSON body of your request.", param=None
            )
        model = body.get("model")
        if self.strict_models and model not in self.models:
            return self.error_response(404, rec)
        return None

    def error_response(
        self,
        status: int,
        rec: RecordedRequest | None = None,
        *,
        message: str | None = None,
        param: str | None = "",
        code: str | None = "",
        etype: str | None = None,
    ) -> Any:
        from starlette.responses import Response

        model = (rec.json or {}).get("model") if rec and isinstance(rec.json, dict) else None
        msg, typ, prm, cod = _ERRORS.get(
            status, (f"HTTP {status} (fake).", "server_error", None, None)
        )
        body = {
            "error": {
                "message": (message or msg).replace("{model}", str(model)),
                "type": etype or typ,
                "param": prm if param == "" else param,
                "code": cod if code == "" else code,
            }
        }
        headers = {"x-request-id": f"req_fake{self.next_id()}"}
        if status == 429 and self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return Response(
            dumps(body), status_code=status, media_type="application/json", headers=headers
        )

    def _special(self, rec: RecordedRequest) -> Any | None:
        """The response for status / context-length behaviours, auth and validation."""
        denied = self.check_auth(rec)
        if denied is not None:
            return denied
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour), rec)
        invalid = self.check_request(rec)
        if invalid is not None:
            return invalid
        if rec.behaviour == CONTEXT_LENGTH:
            m, t, p, c = _CONTEXT_ERROR
            return self.error_response(400, rec, message=m, param=p, code=c, etype=t)
        return None

    def _json(self, obj: Any, rec: RecordedRequest) -> Any:
        from starlette.responses import Response

        raw = dumps(obj).encode()
        if rec.behaviour == GARBAGE:
            return Response(b"<html><body>upstream hiccup</body></html>", media_type="text/html")
        if rec.behaviour == TRUNCATED:
            return Response(raw[: len(raw) // 2], media_type="application/json")
        if rec.behaviour == RESET:
            return self.reset_response(raw, "application/json")
        if rec.behaviour == MIDSTREAM_ERROR:
            return self.error_response(500, rec)
        return Response(raw, media_type="application/json", headers={"x-request-id": "req_fake"})

    def _sse(self, events: list[Any], rec: RecordedRequest) -> Any:
        from starlette.responses import StreamingResponse

        lines = [f"data: {dumps(e)}\n\n" for e in events]
        b = rec.behaviour
        if b == MIDSTREAM_ERROR:
            err = {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            lines = [*lines[:2], f"data: {dumps(err)}\n\n"]
            if self.done_after_error:
                lines.append("data: [DONE]\n\n")
        elif b == TRUNCATED:
            lines = lines[:2]
        elif b == GARBAGE:
            lines = ["data: {this is not json\n\n", "data: [DONE]\n\n"]
        elif b == RESET:
            return StreamingResponse(self.cut_off(lines[:2]), media_type="text/event-stream")
        else:
            lines.append("data: [DONE]\n\n")
        return StreamingResponse(self.paced(lines), media_type="text/event-stream")

    # -- generation

    def _reply_text(self, body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            return dumps({"reply": self.reply})
        return self.reply

    @staticmethod
    def _limit(body: dict[str, Any]) -> int | None:
        for key in ("max_completion_tokens", "max_tokens"):
            if isinstance(body.get(key), int):
                return body[key]
        return None

    def _generate(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """(pieces, finish_reason) honouring stop and max_tokens."""
        text = self._reply_text(body)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        finish = "stop"
        for s in stops:
            if s and s in text:
                text = text[: text.index(s)]
        parts = pieces(text)
        limit = self._limit(body)
        if limit is not None and limit < len(parts):
            parts, finish = parts[:limit], "length"
        return parts, finish

    @staticmethod
    def _prompt_tokens(body: dict[str, Any]) -> int:
        total = 0
        for m in body.get("messages") or []:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str):
                total += count_tokens(content)
            elif isinstance(content, list):
                total += sum(
                    count_tokens(p.get("text", "")) for p in content if isinstance(p, dict)
                )
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            total += count_tokens(prompt)
        return max(total, 1)

    def _tool_call(self, body: dict[str, Any], n: int) -> dict[str, Any] | None:
        tools = body.get("tools") or []
        if not tools:
            return None
        return {
            "id": f"call_fake{n}",
            "type": "function",
            "function": {
                "name": tools[0]["function"]["name"],
                "arguments": dumps(self.tool_arguments),
            },
        }

    async def chat(self, request: Any) -> Any:
        rec = await self.record(request)
        special = self._special(rec)
        if special is not None:
            return special
        body = rec.json
        n = self.next_id()
        created = int(time.time())
        model = self.served_model(body.get("model"))
        call = self._tool_call(body, n) if rec.behaviour == TOOL_CALL else None
        parts, finish = self._generate(body)
        text = "".join(parts)
        prompt_tokens = self._prompt_tokens(body)
        completion_tokens = count_tokens(call["function"]["arguments"]) if call else len(parts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        cid = f"chatcmpl-fake{n}"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if call:
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call],
                    "refusal": None,
                }
                finish = "tool_calls"
            return self._json(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": self.system_fingerprint,
                    "choices": [
                        {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                        for i in range(body.get("n") or 1)
                    ],
                    "usage": usage,
                },
                rec,
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": self.system_fingerprint,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                c["usage"] = None
            return c

        events: list[Any] = []
        if call:
            args = call["function"]["arguments"]
            head = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            events.append(chunk({"role": "assistant", "content": None, "tool_calls": [head]}))
            for i in range(0, len(args), 8):
                piece = {"index": 0, "function": {"arguments": args[i : i + 8]}}
                events.append(chunk({"tool_calls": [piece]}))
            events.append(chunk({}, "tool_calls"))
        else:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            events.extend(chunk({"content": p}) for p in parts)
            events.append(chunk({}, finish))
        return self._sse(self.shape_stream(events, usage, include_usage), rec)

    def shape_stream(
        self, events: list[dict[str, Any]], usage: dict[str, int], include_usage: bool
    ) -> list[dict[str, Any]]:
        """OpenAI: the usage arrives in an extra ``choices: []`` chunk, only when asked for."""
        if include_usage:
            last = events[-1]
            events.append({**{k: v for k, v in last.items()}, "choices": [], "usage": usage})
        return events

    async def completions(self, request: Any) -> Any:
        rec = await self.record(request)
        special = self._special(rec)
        if special is not None:
            return special
        body = rec.json
        n = self.next_id()
        created = int(time.time())
        model = self.served_model(body.get("model"))
        parts, finish = self._generate(body)
        prompt_tokens = self._prompt_tokens(body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(parts),
            "total_tokens": prompt_tokens + len(parts),
        }
        cid = f"cmpl-fake{n}"

        def obj(choices: list[dict[str, Any]], with_usage: Any = None) -> dict[str, Any]:
            o: dict[str, Any] = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": self.system_fingerprint,
                "choices": choices,
            }
            if with_usage is not None or not body.get("stream"):
                o["usage"] = with_usage
            return o

        if not body.get("stream"):
            text = "".join(parts)
            return self._json(
                obj(
                    [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                    usage,
                ),
                rec,
            )
        events = [
            obj([{"index": 0, "text": p, "logprobs": None, "finish_reason": None}]) for p in parts
        ]
        events.append(obj([{"index": 0, "text": "", "logprobs": None, "finish_reason": finish}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(obj([], usage))
        return self._sse(events, rec)

    def embedding_model(self, requested: str | None) -> str:
        return self.served_model(requested)

    async def embeddings(self, request: Any) -> Any:
        rec = await self.record(request)
        special = self._special(rec)
        if special is not None:
            return special
        body = rec.json
        inp = body.get("input")
        if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
            inputs = [inp]
        elif isinstance(inp, list) and inp:
            inputs = inp
        else:
            return self.error_response(
                400, rec, message="'input' is a required property", param="input"
            )
        dim = body.get("dimensions") or self.embedding_dim
        fmt = body.get("encoding_format") or "float"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += count_tokens(text) if isinstance(item, str) else len(item)
            vec = fake_vector(text, dim)
            data.append(
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": floats_to_base64(vec) if fmt == "base64" else vec,
                }
            )
        return self._json(
            {
                "object": "list",
                "data": data,
                "model": self.embedding_model(body.get("model")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            rec,
        )

    def model_list(self) -> list[dict[str, Any]]:
        return [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
            for m in self.models
        ]

    async def list_models(self, request: Any) -> Any:
        rec = await self.record(request)
        denied = self.check_auth(rec)
        if denied is not None:
            return denied
        if rec.behaviour in STATUS_BEHAVIOURS:
            return self.error_response(int(rec.behaviour), rec)
        return self._json({"object": "list", "data": self.model_list()}, rec)

    async def get_model(self, request: Any) -> Any:
        rec = await self.record(request)
        denied = self.check_auth(rec)
        if denied is not None:
            return denied
        model_id = request.path_params["model"]
        for m in self.model_list():
            if m["id"] == model_id:
                return self._json(m, rec)
        return self.error_response(404, rec, message=f"The model `{model_id}` does not exist.")

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
        ]

    def build_app(self) -> Any:
        from starlette.applications import Starlette

        return Starlette(routes=self.routes())
