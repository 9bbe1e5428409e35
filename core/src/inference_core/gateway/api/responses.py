"""The OpenAI Responses API: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``.

Translated to chat completions by :mod:`inference_core.protocols.responses` and served by
``router.chat`` through the shared pipeline (fallback, model routing, deadlines, retries,
metrics, access log, keys and limits exactly as for chat).  Answers with ``store`` (the
default) are kept in a bounded store (:class:`~inference_core.protocols.store.MemoryResponseStore`,
``INFERENCE_GATEWAY_RESPONSES_STORE_MAX`` / ``_TTL``) for ``previous_response_id`` and the GET
and DELETE routes.  Errors are OpenAI-shaped; a stream cut after its first byte ends with an
``error`` event and ``response.failed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ...protocols import native
from ...protocols import responses as proto
from ...protocols._common import ProtocolError, new_id
from ...protocols.store import MemoryResponseStore, ResponseStore, StoredResponse
from ..errors import GatewayError, error_for
from ..pipeline import Endpoint, Framer, Gateway, Handler, Receive, Route, Scope, Send, raw_of

__all__ = ["ResponsesEndpoint", "routes"]

_PREFIX = "/v1/responses/"


class _Call:
    """A parsed Responses request, its chat translation and the conversation's items."""

    __slots__ = ("chat", "items", "model", "req", "rid", "stream")

    def __init__(self, req: proto.ResponsesRequest) -> None:
        self.req = req
        self.model = req.model
        self.stream = req.stream
        self.rid = new_id("resp_")
        self.chat: Any = None
        self.items: list[dict[str, Any]] = []


class ResponsesFramer(Framer):
    """Chat chunks -> Responses events; stores the final response at the end."""

    __slots__ = ("_call", "_final", "_native", "_s", "_store")

    def __init__(self, call: _Call, store: ResponseStore) -> None:
        self._call = call
        self._store = store
        self._s = proto.ResponsesStream(call.req, call.rid)
        self._native = False
        self._final: dict[str, Any] | None = None

    @property
    def usage(self) -> Any:  # type: ignore[override]
        return self._s.usage

    def frame(self, chunk: Any) -> bytes | None:
        if type(chunk) is native.NativeEvent:  # a backend that speaks Responses natively
            self._native = True
            data = raw_of(chunk) or b""
            head = data[:40]
            if b"response.completed" in head or b"response.incomplete" in head:
                try:
                    payload = data.split(b"\ndata: ", 1)[1]
                    self._final = orjson.loads(payload)["response"]
                except Exception:  # not storable; the client still gets the event
                    self._final = None
            return data
        return self._s.feed(chunk)

    async def _stored(self, data: bytes, final: dict[str, Any]) -> bytes:
        await _store(self._store, self._call, final)
        return data

    def end(self) -> Any:
        if self._native:
            if self._call.req.store and self._final is not None:
                return self._stored(b"", self._final)
            return b""
        data, final = self._s.end()
        if self._call.req.store:
            return self._stored(data, final)
        return data

    def error(self, exc: BaseException, redact: Callable[[str], str]) -> bytes:
        status, body, _headers = error_for(exc, redact)
        return self._s.error(status, body)

    def shutdown(self) -> bytes:
        exc = GatewayError(
            503,
            "The gateway is shutting down; the stream was cut.",
            type="service_unavailable",
            code="gateway_shutdown",
        )
        return self._s.error(503, error_for(exc)[1])


async def _store(store: ResponseStore, call: _Call, final: dict[str, Any]) -> None:
    items = call.items + [item for item in final.get("output") or [] if isinstance(item, dict)]
    await store.put(StoredResponse(str(final.get("id") or call.rid), final, items))


class ResponsesEndpoint(Endpoint):
    """OpenAI Responses (``/v1/responses``), translated to chat completions."""

    name = "responses"

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def parse(self, body: bytes) -> _Call:
        return _Call(proto.parse_request(body))

    def check(self, gateway: Gateway, call: _Call) -> None:
        gateway.cap(call.req.max_output_tokens, gateway.max_tokens, "max_output_tokens")

    async def translate(self, call: _Call, gateway: Gateway) -> Any:  # type: ignore[override]
        previous = None
        pid = call.req.previous_response_id
        if pid:
            previous = await self.store.get(pid)
            if previous is None:
                raise ProtocolError(
                    f"Previous response with id '{pid}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
        call.chat, call.items = proto.to_chat(call.req, previous)
        native.offer(native.NativeRequest("openai.responses", _native_body(call), call.stream))
        return call.chat

    async def _respond(self, result: Any, call: _Call) -> bytes:
        if type(result) is native.NativeAnswer:
            raw = raw_of(result) or b"{}"
            if call.req.store:
                await _store(self.store, call, orjson.loads(raw))
            return raw
        obj, _reader = proto.response_from_chat(result, call.req, call.rid)
        if call.req.store:
            await _store(self.store, call, obj)
        return orjson.dumps(obj)

    def respond(self, result: Any, call: _Call, trace: Any) -> Any:
        native.offer(None)  # the backend has answered: drop the offer (and what it holds)
        return self._respond(result, call)

    def framer(self, call: _Call, trace: Any) -> Framer:
        native.offer(None)
        return ResponsesFramer(call, self.store)


def _native_body(call: _Call) -> Any:
    """The client's body for a native backend: the stored conversation in ``input``."""

    def make() -> dict[str, Any]:
        body = call.req.model_dump(mode="json", exclude_none=True)
        body.pop("previous_response_id", None)
        body["input"] = list(call.items)
        body["store"] = False
        return body

    return make


def _stored_routes(gw: Gateway, store: ResponseStore) -> Handler:
    async def stored_response(scope: Scope, receive: Receive, send: Send) -> None:
        """GET (the stored response) or DELETE (forget it) ``/v1/responses/{id}``."""
        rid = scope["path"][len(_PREFIX) :]

        async def produce() -> tuple[int, bytes]:
            if not rid or "/" in rid:
                raise GatewayError(
                    404, f"Unknown route: {scope['method']} {scope['path']}", code="unknown_route"
                )
            if scope["method"] == "DELETE":
                if not await store.delete(rid):
                    raise _not_found(rid)
                return 200, orjson.dumps({"id": rid, "object": "response", "deleted": True})
            record = await store.get(rid)
            if record is None:
                raise _not_found(rid)
            return 200, orjson.dumps(record.response)

        await gw.simple(scope, send, "responses", produce, methods=("GET", "DELETE"))

    return stored_response


def _not_found(rid: str) -> GatewayError:
    return GatewayError(404, f"Response with id '{rid}' not found.", param="response_id")


def routes(gateway: Gateway) -> list[Route]:
    """The Responses routes, over one bounded store per app."""
    settings = gateway.settings
    ttl = getattr(settings, "responses_store_ttl", 3600.0)
    # with INFERENCE_REDIS_URL, shared by every worker and replica (docs/teams.md)
    store = gateway.teams.response_store(ttl) or MemoryResponseStore(
        max_items=getattr(settings, "responses_store_max", 1000), ttl=ttl
    )
    gateway.responses_store = store  # type: ignore[attr-defined]
    return [
        Route(
            "/v1/responses",
            ("POST",),
            gateway.handler(ResponsesEndpoint(store)),
            "OpenAI Responses API (translated to chat completions)",
            proto.ResponsesRequest,
            None,
            stream=True,
        ),
        Route(
            _PREFIX,
            ("GET", "DELETE"),
            _stored_routes(gateway, store),
            "A stored response (GET), or forget it (DELETE)",
            prefix=True,
            openapi_path="/v1/responses/{response_id}",
        ),
    ]
