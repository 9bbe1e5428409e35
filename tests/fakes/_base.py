"""The machinery every fake server shares: a Starlette app served by uvicorn in a thread.

Nothing here knows a protocol; see ``openai_server``, ``ollama_server`` and ``textgen_server``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------- behaviours

NORMAL = "normal"
#: Stream: a few chunks, then the protocol's in-band error (SSE ``data: {"error":...}`` or an
#: NDJSON ``{"error": ...}`` line), status 200 unchanged. Non-streaming requests answer 500.
MIDSTREAM_ERROR = "midstream_error"
#: Stream: a few chunks, then the body ends cleanly without ``[DONE]`` / ``done: true``.
#: Non-streaming requests get a 200 whose JSON body is cut in half.
TRUNCATED = "truncated"
#: A 200 whose body is not what the protocol promises (HTML, or SSE/NDJSON lines of junk).
GARBAGE = "garbage"
#: Sleep ``server.delay`` seconds before the first byte (status line included).
SLOW = "slow"
#: Send part of the body, then drop the connection (the client sees an incomplete body).
RESET = "reset"
#: Answer with a tool call to the first tool of the request (``server.tool_arguments``).
TOOL_CALL = "tool_call"
#: 400 saying the prompt does not fit the context window (protocol's own wording).
CONTEXT_LENGTH = "context_length"

#: Behaviours that are an HTTP status: the protocol's error body with that status.
#: ``"429"`` adds ``Retry-After: server.retry_after``.
STATUS_BEHAVIOURS = ("400", "401", "403", "404", "409", "422", "429", "500", "502", "503", "504")

BEHAVIOURS = (
    NORMAL,
    MIDSTREAM_ERROR,
    TRUNCATED,
    GARBAGE,
    SLOW,
    RESET,
    TOOL_CALL,
    CONTEXT_LENGTH,
    *STATUS_BEHAVIOURS,
)


class _Reset(Exception):
    """Raised inside a response body generator to make uvicorn drop the connection."""


@dataclass
class RecordedRequest:
    """One request the fake received (headers lower-cased, ``json`` parsed when possible)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    behaviour: str = NORMAL
    query: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------ text helpers


def pieces(text: str) -> list[str]:
    """Split a reply into stream-sized pieces (words with their leading space)."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words) if w or i == 0]


def count_tokens(text: str) -> int:
    """The fakes' token count: one per whitespace-separated word (at least one)."""
    return max(1, len(text.split()))


def fake_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text`` (same text, same vector; batch-independent)."""
    raw = b""
    counter = 0
    while len(raw) < dim * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(b / 127.5) - 1.0 for b in raw[: dim * 4 : 4]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


def floats_to_base64(values: Iterable[float]) -> str:
    """Little-endian float32 bytes, base64-encoded (OpenAI's ``encoding_format: base64``)."""
    import base64

    vals = list(values)
    return base64.b64encode(struct.pack(f"<{len(vals)}f", *vals)).decode()


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# ------------------------------------------------------------------------------------ server


class FakeServer:
    """Base class: a real HTTP server on 127.0.0.1 (a free port) run by uvicorn in a thread.

    Switch behaviours at any time from the test (thread-safe enough for simple attributes):
    ``server.behaviour = "429"`` applies to every following request; ``server.queue("500",
    "500")`` applies to the next requests in order, then ``behaviour`` again.  ``requests``
    records what arrived; ``reset()`` restores the defaults between tests.
    """

    def __init__(
        self,
        *,
        behaviour: str = NORMAL,
        api_key: str | None = None,
        delay: float = 1.0,
        chunk_delay: float = 0.0,
        retry_after: str | None = "1",
        reply: str = "Hello from the fake server.",
        tool_arguments: dict[str, Any] | None = None,
        embedding_dim: int = 8,
    ) -> None:
        self.behaviour = behaviour
        self.api_key = api_key
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.retry_after = retry_after
        self.reply = reply
        self.tool_arguments = tool_arguments or {"location": "Paris", "unit": "celsius"}
        self.embedding_dim = embedding_dim
        self.requests: list[RecordedRequest] = []
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self._defaults: dict[str, Any] = {}

    # -- lifecycle

    def build_app(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash, no path)."""
        if self.port is None:
            raise RuntimeError("the fake server is not started (use it as a context manager)")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        import uvicorn

        self._defaults = {
            k: copy.deepcopy(v)
            for k, v in vars(self).items()
            if not k.startswith("_") and k not in ("port", "requests")
        }

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.build_app(),
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour control

    def queue(self, *behaviours: str) -> None:
        """The next ``len(behaviours)`` requests take these behaviours, in order."""
        for b in behaviours:
            if b not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {b!r}; known: {', '.join(BEHAVIOURS)}")
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Back to the constructor's settings; forget recorded requests and queued behaviours."""
        for key, value in self._defaults.items():
            setattr(self, key, copy.deepcopy(value))
        with self._lock:
            self._queue.clear()
        self.requests.clear()

    def next_behaviour(self) -> str:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.behaviour

    def next_id(self) -> int:
        return next(self._ids)

    # -- helpers for the protocol apps

    async def record(self, request: Any) -> RecordedRequest:
        """Read and record a Starlette request; pick its behaviour."""
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
            behaviour=self.next_behaviour(),
            query=dict(request.query_params),
        )
        self.requests.append(rec)
        if rec.behaviour == SLOW:
            await asyncio.sleep(self.delay)
        return rec

    def last(self, path: str | None = None) -> RecordedRequest:
        """The most recent recorded request (to ``path`` when given)."""
        for rec in reversed(self.requests):
            if path is None or rec.path == path:
                return rec
        raise LookupError(f"no request to {path!r} was recorded")

    async def paced(self, lines: Iterable[str | bytes]) -> AsyncIterator[bytes]:
        """Yield ``lines`` with ``chunk_delay`` between them (for streaming responses)."""
        for i, line in enumerate(lines):
            if i and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield line.encode() if isinstance(line, str) else line

    @staticmethod
    async def cut_off(parts: Iterable[bytes | str]) -> AsyncIterator[bytes]:
        """Yield ``parts``, then drop the connection (``reset`` behaviour)."""
        for part in parts:
            yield part.encode() if isinstance(part, str) else part
            await asyncio.sleep(0)
        raise _Reset("connection reset by the fake server")

    def reset_response(self, body: bytes, media_type: str) -> Any:
        """A response that promises ``body`` (Content-Length) but sends half of it, then drops."""
        from starlette.responses import StreamingResponse

        return StreamingResponse(
            self.cut_off([body[: len(body) // 2]]),
            media_type=media_type,
            headers={"content-length": str(len(body))},
        )
