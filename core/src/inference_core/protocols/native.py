"""The optional capability of a backend that speaks a client protocol natively.

By default the gateway translates ``/v1/messages`` and ``/v1/responses`` to chat completions
(:mod:`.anthropic`, :mod:`.responses`) and every backend just answers its ``chat`` hook.  A
backend whose server implements a protocol correctly may answer it natively instead:

1. declare it: ``native_protocols = frozenset({"anthropic.messages"})`` on the plugin object
   (values from :data:`PROTOCOLS`);
2. in the ``chat`` hook, call :func:`native_request`: while the gateway serves one of the
   declared protocols it returns a :class:`NativeRequest` (``protocol``, ``body``: the client's
   request in that protocol, ``stream``).  Send ``body`` (map ``body["model"]`` with
   ``config.model_for``) and return a :class:`NativeAnswer` (the answer's JSON bytes) or, when
   ``request.stream``, an async iterator of :class:`NativeEvent` (one complete SSE frame each,
   ``event:`` line included); return ordinary chat objects otherwise.

The router treats the answer like any other (fallback, retries, deadlines, metrics), so a chain
may mix native and translated backends: the client must never see which one answered.  Use a
native endpoint only where it keeps the protocol (PROTOCOLS.md lists how llama-server's
``/v1/messages`` and ``/v1/responses`` do not: ``chatcmpl-`` ids, ``max_tokens`` optional,
prefill echoed, ``completed`` instead of ``incomplete``, no ``previous_response_id``); the
conformance kit (``native_protocols`` in :class:`~inference_core.testing.BackendConformance`)
checks the answers' shape and event order with :mod:`.validate`.

What the gateway keeps doing itself: authentication, limits, ``previous_response_id`` (the
body a backend gets has the stored conversation in ``input``, no ``previous_response_id`` and
``store: false``; the gateway stores the answer), and the error shapes.  A request the
translation must stream although the client did not ask to (Messages with ``stop_sequences``)
is never offered natively.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ..models import Usage, WireModel

__all__ = [
    "PROTOCOLS",
    "NativeAnswer",
    "NativeEvent",
    "NativeRequest",
    "native_request",
    "offer",
    "speaks",
]

#: the protocols a backend may speak natively
PROTOCOLS = ("anthropic.messages", "openai.responses")

_CURRENT: ContextVar[NativeRequest | None] = ContextVar("inference_native_request", default=None)


class NativeRequest:
    """The client's request in its own protocol (``body`` is built on first access)."""

    __slots__ = ("_body", "_make", "protocol", "stream")

    def __init__(self, protocol: str, make_body: Callable[[], dict[str, Any]], stream: bool):
        self.protocol = protocol
        self.stream = stream
        self._make = make_body
        self._body: dict[str, Any] | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body to send to the backend's native endpoint (a fresh copy is yours)."""
        if self._body is None:
            self._body = self._make()
        return self._body


def native_request() -> NativeRequest | None:
    """The native request of the call being served, or None (call it in a ``chat`` hook)."""
    return _CURRENT.get()


def offer(request: NativeRequest | None) -> None:
    """Gateway side: offer ``request`` to the backends of the current request (its task).

    The previous offer is emptied first: tasks created meanwhile (the disconnect watcher)
    hold a copy of the context, so it must not keep the request's objects alive.
    """
    old = _CURRENT.get()
    if old is not None:
        old._make = _empty
        old._body = None
    _CURRENT.set(request)


def _empty() -> dict[str, Any]:
    return {}


def speaks(plugin: object, protocol: str) -> bool:
    """True when ``plugin`` declares ``protocol`` in its ``native_protocols``."""
    return protocol in (getattr(plugin, "native_protocols", None) or ())


class NativeAnswer(WireModel):
    """A whole non-streamed answer in the client's protocol: its JSON bytes are ``raw``."""

    usage: Usage | None = None

    @classmethod
    def of(cls, body: bytes, usage: Usage | None = None) -> NativeAnswer:
        answer = cls(usage=usage)
        answer.set_raw(body)
        return answer


class NativeEvent(WireModel):
    """One SSE frame of a native stream (``event: ...\\ndata: ...\\n\\n``) in ``raw``."""

    usage: Usage | None = None
    choices: list[Any] = []

    @classmethod
    def of(cls, frame: bytes, usage: Usage | None = None) -> NativeEvent:
        event = cls(usage=usage)
        event.set_raw(frame if frame.endswith(b"\n\n") else frame.rstrip(b"\n") + b"\n\n")
        return event
