"""Small helpers shared by the protocol translators (ids, SSE frames, errors, images)."""

from __future__ import annotations

import os
from typing import Any

import orjson

__all__ = ["EventStream", "ProtocolError", "image_url", "new_id", "sse"]


def new_id(prefix: str) -> str:
    """``prefix`` + 24 random hex digits (``msg_...``, ``resp_...``, ``fc_...``)."""
    return prefix + os.urandom(12).hex()


def sse(event: str, payload: dict[str, Any]) -> bytes:
    """One SSE frame with an ``event:`` line naming the payload's type (both SDKs need it)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class ProtocolError(Exception):
    """A request the protocol does not allow (or this gateway does not support): a 4xx.

    ``param`` names the offending field (dotted path), ``status`` defaults to 400.  The gateway
    answers it in the protocol's own error shape.
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        code: str = "invalid_value",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


def image_url(source: dict[str, Any], param: str) -> str:
    """An Anthropic image ``source`` as a chat ``image_url`` URL (data URL for base64)."""
    kind = source.get("type")
    if kind == "base64":
        media = source.get("media_type") or "image/png"
        data = source.get("data")
        if not isinstance(data, str):
            raise ProtocolError(f"'{param}.data' must be a base64 string.", param=param)
        return f"data:{media};base64,{data}"
    if kind == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise ProtocolError(
        f"Unsupported image source type {kind!r} at '{param}' (use 'base64' or 'url').",
        param=param,
    )


class EventStream:
    """Chat chunks -> one protocol's stream events (Anthropic's, the Responses API's).

    A subclass keeps ``reader`` (a :class:`~.chunks.ChunkReader`), ``usage`` and ``_started``,
    and says how its stream starts (:meth:`start`) and how the reader's steps become frames
    (:meth:`_frames`); :meth:`feed` is the same for every protocol.
    """

    __slots__ = ()

    def start(self, model: str | None) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _frames(self, steps: list[Any]) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def feed(self, chunk: Any) -> bytes:
        """The frames for one chat chunk (``b""`` when none)."""
        out = b"" if self._started else self.start(getattr(chunk, "model", None))  # type: ignore[attr-defined]
        steps = self.reader.feed(chunk)  # type: ignore[attr-defined]
        if chunk.usage is not None:
            self.usage = chunk.usage  # type: ignore[attr-defined]
        if steps:
            out += self._frames(steps)
        return out
