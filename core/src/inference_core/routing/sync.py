"""The blocking facade over :class:`~inference_core.router.Router`, and the seed's health shape."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .trace import RequestTrace

if TYPE_CHECKING:
    from ..models import ChatRequest, EmbeddingResponse, ModelInfo
    from ..router import Router

__all__ = ["SyncRouter", "seed_health"]


def seed_health(report: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The seed application's view of :meth:`Router.health`: ``primary`` and ``fallbacks``,
    each ``{"type", "healthy", "models"}`` (plus ``error`` when its plugin failed to load)."""
    entries = []
    for name, info in report.items():
        entries.append(
            {
                "type": name,
                "healthy": info.get("state") in ("ready", "unknown")
                and info.get("breaker") != "open"
                and not info.get("load_error"),
                "models": list(info.get("models") or []),
                **({"error": info["load_error"]} if info.get("load_error") else {}),
            }
        )
    return {"primary": entries[0] if entries else None, "fallbacks": entries[1:]}


class SyncRouter:
    """A blocking facade over :class:`Router`, for scripts and synchronous code.

    The router runs on an event loop in a daemon thread, so this works even when the calling
    thread already runs an event loop (it blocks that thread, as any sync call does).  Pass an
    unstarted ``router``, or keyword arguments for :meth:`Router.from_env`.
    """

    def __init__(self, router: Router | None = None, **from_env_kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="inference-core-sync", daemon=True
        )
        self._thread.start()
        try:
            if router is None:
                from ..router import Router

                router = Router.from_env(**from_env_kwargs)
            self.router = router
            self._run(self.router.start())
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --------------------------------------------------------------------------- the API

    def chat(self, request: ChatRequest | Mapping[str, Any], *, trace: RequestTrace | None = None):
        """A ``ChatResponse``, or (``stream``) a blocking iterator of ``ChatChunk``."""
        result = self._run(self.router.chat(request, trace=trace))
        return self._iterate(result) if hasattr(result, "__anext__") else result

    def complete(self, request: Any, *, trace: RequestTrace | None = None) -> Any:
        result = self._run(self.router.complete(request, trace=trace))
        return self._iterate(result) if hasattr(result, "__anext__") else result

    def embed(self, request: Any, *, trace: RequestTrace | None = None) -> EmbeddingResponse:
        return self._run(self.router.embed(request, trace=trace))

    def health(self, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        return self._run(self.router.health(refresh=refresh))

    def list_models(self) -> list[ModelInfo]:
        return self._run(self.router.list_models())

    def _iterate(self, stream: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(stream.aclose())

    # ------------------------------------------------------------------ the seed's names

    def create_chat_completion(
        self,
        messages: list[dict[str, Any]],
        model: str = "default",
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """The seed's call: an OpenAI-shaped dict (or, ``stream=True``, an iterator of dicts)."""
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream, **kwargs}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        result = self.chat(body)
        if stream:
            return (chunk.to_dict() for chunk in result)
        return result.to_dict()

    def create_embedding(
        self, text: str | list[str], model: str = "default", **kwargs: Any
    ) -> dict[str, Any]:
        """The seed's call: an OpenAI-shaped embeddings dict."""
        return self.embed({"model": model, "input": text, **kwargs}).to_dict()

    def get_health_status(self) -> dict[str, Any]:
        """The seed's shape (``primary`` / ``fallbacks`` with ``type``, ``healthy``, ``models``)
        plus ``backends``: the full :meth:`Router.health` report."""
        report = self.health()
        return {**seed_health(report), "backends": report}

    # --------------------------------------------------------------------------- lifecycle

    def close(self, drain_timeout: float | None = 30.0) -> None:
        """Close the router (draining in-flight requests) and stop the loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self.router.aclose(drain_timeout))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> SyncRouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
