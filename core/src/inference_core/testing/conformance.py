"""``BackendConformance``: the checks every backend plugin must pass.

See :mod:`inference_core.testing` for how to use it.  The checks are plain synchronous pytest
tests that run their coroutine with ``asyncio.run``, so they need no asyncio plugin or mode.
Each check enforces one rule of the plugin contract (the table in CONTRIBUTING.md, kept in sync
with the checks' docstrings by a test) and asserts on the wire: the fake upstream records every
request it received (body, headers, how many per call) and whether each answer was released.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import httpx
import pytest

from .. import hookspecs
from ..errors import CapabilityNotSupported, InferenceError
from ..http.client import create_client
from ..models import (
    BackendConfig,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Health,
    ModelInfo,
)
from . import canned
from .expectations import (
    ALIAS,
    ALIAS_TARGET,
    CHAT_FIELDS,
    COMPLETE_FIELDS,
    CONCRETE_MODEL,
    EMBED_INPUTS,
    EXPECTED_ERRORS,
    RETRY_AFTER,
    RETRYABLE_FAILURES,
    SECRET,
    STREAM_FIELDS,
)
from .harness import (
    _SPEC_ARGS,
    HookHarness,
    capture_logs,
    drain,
    hook_implementations,
    make_config,
)
from .transport import FAILURES, TrackingTransport, failing_handler
from .wire import OpenAIWire, Wire

__all__ = ["BackendConformance", "HookHarness", "hook_implementations", "make_config"]


def _decode_base64(value: Any) -> list[float] | None:
    if not isinstance(value, str):
        return None
    raw = base64.b64decode(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class BackendConformance:
    """Subclass as ``class TestMyBackendConformance(BackendConformance)`` and set:

    * ``plugin``: the plugin object or module (what the entry point points at);
    * ``backend_name``; ``model`` (what ``config.model`` is), ``base_url`` of the fake upstream;
      ``api_key`` and ``options`` (options named ``*key``, ``*token``, ``*secret`` are secrets
      the kit looks for in logs, health details and errors);
    * capability flags ``supports_chat``, ``supports_stream``, ``supports_embeddings``,
      ``supports_complete``, ``supports_list_models``; ``talks_http = False`` for a backend that
      makes no HTTP call at all (error-mapping checks then assert that it makes none);
    * the fake upstream: ``mock_chat(upstream)``, ``mock_chat_stream(upstream)``,
      ``mock_embed(upstream)``, ``mock_complete(upstream)``, ``mock_health(upstream)``,
      ``mock_list_models(upstream)`` register routes on ``upstream`` (a ``respx.Router`` whose
      ``base_url`` is ``self.base_url``), or override ``handler(self, request) -> httpx.Response``
      to answer every success scenario yourself;
    * ``wire``: the upstream protocol (:class:`~inference_core.testing.wire.OpenAIWire` by
      default). The wire-level checks (usage, in-band errors, fields, aliases, embeddings)
      let the wire answer the generation requests and read what the plugin sent; every other
      request of theirs goes to the ``mock_*`` routes of the same hook.
    """

    plugin: ClassVar[object] = None
    backend_name: ClassVar[str] = "test"
    base_url: ClassVar[str] = "http://upstream.test"
    model: ClassVar[str | None] = "upstream-model"
    api_key: ClassVar[str | None] = SECRET
    options: ClassVar[dict[str, Any]] = {}
    supports_chat: ClassVar[bool] = True
    supports_stream: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    supports_complete: ClassVar[bool] = False
    supports_list_models: ClassVar[bool] = True
    talks_http: ClassVar[bool] = True
    wire: ClassVar[Wire] = OpenAIWire()
    #: protocols the backend answers natively (``inference_core.protocols.native``); each
    #: needs ``mock_native(upstream, protocol, stream)`` registering the native endpoint
    native_protocols: ClassVar[tuple[str, ...]] = ()
    #: states a health check may report for a 5xx answer (llama.cpp: 503 means loading)
    health_states_on_5xx: ClassVar[tuple[str, ...]] = ("down", "loading")
    handler: ClassVar[Callable[..., httpx.Response] | None] = None

    # ---------------------------------------------------------------- author-supplied upstream

    def mock_chat(self, upstream: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: define mock_chat(self, upstream)")

    def mock_chat_stream(self, upstream: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: define mock_chat_stream(self, upstream)")

    def mock_embed(self, upstream: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: define mock_embed(self, upstream)")

    def mock_complete(self, upstream: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: define mock_complete(self, upstream)")

    def mock_health(self, upstream: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: define mock_health(self, upstream)")

    def mock_list_models(self, upstream: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}: define mock_list_models(self, upstream)")

    def mock_native(self, upstream: Any, protocol: str, stream: bool) -> None:
        raise NotImplementedError(
            f"{type(self).__name__}: define mock_native(self, upstream, protocol, stream)"
        )

    def backend_config(self) -> BackendConfig:
        """The config every check passes as ``config`` (override to add options)."""
        return make_config(
            self.backend_name,
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key,
            aliases={ALIAS: self.model} if self.model else {},
            options=self.options,
        )

    @property
    def request_model(self) -> str:
        """The model the kit's ordinary requests name: the backend's own (as the router does)."""
        return self.model or "default"

    # ------------------------------------------------------------------------------ machinery

    def _upstream_handler(self, scenario: str) -> Callable[[httpx.Request], Any]:
        if type(self).handler is not None:
            return self.handler  # type: ignore[return-value]
        if not self.talks_http and getattr(type(self), f"mock_{scenario}") is getattr(
            BackendConformance, f"mock_{scenario}"
        ):
            return failing_handler("connect")  # no upstream: any request fails loudly
        import respx

        router = respx.Router(base_url=self.base_url, assert_all_called=False)
        getattr(self, f"mock_{scenario}")(router)
        return router.async_handler

    def _wire_handler(self, mock: str, scenario: str) -> Callable[[httpx.Request], Any]:
        """The wire answers the generation requests of ``scenario``; ``mock_<mock>`` the rest."""
        if not self.talks_http:
            return self._upstream_handler(mock)
        rest = self._upstream_handler(mock)
        wire = self.wire

        async def handler(request: httpx.Request) -> httpx.Response:
            answer = wire.answer(request, scenario)
            if answer is not None:
                return answer
            result = rest(request)
            return await result if inspect.isawaitable(result) else result

        return handler

    def _run(
        self,
        handler: Callable[[httpx.Request], Any],
        scenario: Callable[
            [HookHarness, BackendConfig, httpx.AsyncClient, TrackingTransport], Awaitable[Any]
        ],
        *,
        truncate: str | None = None,
        config: BackendConfig | None = None,
    ) -> Any:
        """Run ``scenario`` as the router would: the shared client made, never entered.

        The router builds its client with ``create_client()`` and closes it only when it
        closes itself; the hooks get it in that state.  A hook that closes it (``async with
        http:``, ``await http.aclose()``) would close it for every backend: that fails here,
        whatever else the scenario found.
        """
        assert self.plugin is not None, f"{type(self).__name__}.plugin is not set"
        harness = HookHarness(self.plugin, self.backend_name)
        config = config or self.backend_config()

        async def main() -> Any:
            transport = TrackingTransport(httpx.MockTransport(handler), truncate=truncate)  # type: ignore[arg-type]
            http = create_client(transport=transport)
            try:
                try:
                    result = await scenario(harness, config, http, transport)
                except BaseException as exc:
                    self._assert_open(http, exc)
                    raise
                self._assert_open(http, None)
                return result
            finally:
                await http.aclose()

        return asyncio.run(main())

    @staticmethod
    def _assert_open(http: httpx.AsyncClient, error: BaseException | None) -> None:
        if http.is_closed:
            also = f" (the call then failed: {type(error).__name__}: {error})" if error else ""
            raise AssertionError(
                "a hook closed the shared `http` client (`async with http:` or "
                "`http.aclose()`): core owns it and shares it between every backend, never "
                f"close it{also}"
            ) from error

    def _chat_request(self, stream: bool = False, **fields: Any) -> ChatRequest:
        return ChatRequest.model_validate(
            {
                "model": self.request_model,
                "messages": [{"role": "user", "content": "Say hello"}],
                "stream": stream,
                "max_tokens": 16,
                **fields,
            }
        )

    def _complete_request(self, stream: bool = False, **fields: Any) -> CompletionRequest:
        return CompletionRequest.model_validate(
            {
                "model": self.request_model,
                "prompt": "Once upon a time",
                "max_tokens": 8,
                "stream": stream,
                **fields,
            }
        )

    def _calls(self, *, health: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
        """(label, hook, kwargs) of every call the capability flags enable."""
        calls: list[tuple[str, str, dict[str, Any]]] = []
        if self.supports_chat:
            calls.append(("chat", "chat", {"request": self._chat_request()}))
            if self.supports_stream:
                calls.append(("chat (stream)", "chat", {"request": self._chat_request(True)}))
        if self.supports_embeddings:
            request = EmbeddingRequest(model=self.request_model, input=["a", "b"])
            calls.append(("embed", "embed", {"request": request}))
        if self.supports_complete:
            calls.append(("complete", "complete", {"request": self._complete_request()}))
            if self.supports_stream:
                request = self._complete_request(True)
                calls.append(("complete (stream)", "complete", {"request": request}))
        if self.supports_list_models:
            calls.append(("list_models", "list_models", {}))
        if health:
            calls.append(("health", "health", {}))
        return calls

    def _stream_calls(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [c for c in self._calls() if "(stream)" in c[0]]

    def _secrets(self, config: BackendConfig) -> list[str]:
        """The API key and every secret option (``*key``, ``*token``, ``*secret``)."""
        from pydantic import SecretStr

        found = [config.secret() or ""]
        found += [v.get_secret_value() for v in config.options.values() if isinstance(v, SecretStr)]
        return [s for s in found if len(s) >= 4]

    def _leaks(self, text: str, config: BackendConfig) -> bool:
        return any(secret in text for secret in self._secrets(config))

    def _assert_closed(self, transport: TrackingTransport, what: str) -> None:
        leaked = transport.unclosed()
        assert not leaked, (
            f"{what}: {len(leaked)} upstream response(s) never closed "
            f"({', '.join(str(t.request.url) for t in leaked)}); close it (async with / aclose)"
        )

    def _no_request(self) -> str:
        return (
            f"the upstream received no request that {type(self.wire).__name__} recognises as a "
            "generation request (a server with another protocol than OpenAI's needs its own "
            "inference_core.testing.wire.Wire: set `wire = MyWire()`)"
        )

    def _sent(self, transport: TrackingTransport, mark: int = 0) -> list[dict[str, Any]]:
        """The OpenAI-named fields of every generation request the upstream received."""
        sent = []
        for record in transport.since(mark):
            fields = self.wire.fields(record.request)
            if fields is not None:
                sent.append(fields)
        return sent

    # ------------------------------------------------------------------------ the checks: shape

    def test_hooks_are_known_async_and_without_defaults(self) -> None:
        """Every hook is an `async def` named as in hookspecs, taking only the spec's arguments,
        none with a default."""
        impls = hook_implementations(self.plugin)
        assert impls, f"{self.plugin!r} has no @inference_core.hookimpl method at all"
        for name, func in impls.items():
            assert name in hookspecs.HOOK_NAMES, (
                f"{name!r} is not a hook (known: {', '.join(hookspecs.HOOK_NAMES)}); misspelled?"
            )
            assert inspect.iscoroutinefunction(func), (
                f"hook {name!r} must be declared `async def` (got a "
                f"{'async generator' if inspect.isasyncgenfunction(func) else 'plain'} function;"
                " a streaming chat returns an async iterator from an async def)"
            )
            params = inspect.signature(func).parameters
            for pname, param in params.items():
                assert pname in _SPEC_ARGS[name], (
                    f"hook {name!r} takes {pname!r}, which the hookspec does not pass "
                    f"(it passes {', '.join(_SPEC_ARGS[name])})"
                )
                assert param.default is inspect.Parameter.empty, (
                    f"hook {name!r}: parameter {pname!r} has a default; pluggy then never "
                    "passes it. Remove the default."
                )
        pm = HookHarness(self.plugin, self.backend_name).pm
        pm.check_pending()

    def test_capability_flags_match_the_hooks(self) -> None:
        """The capability flags match the hooks: a flag that is true has its hook, a hook has
        its flag, and every backend has `health`."""
        harness = HookHarness(self.plugin, self.backend_name)
        flags = {
            "chat": self.supports_chat,
            "embed": self.supports_embeddings,
            "complete": self.supports_complete,
            "list_models": self.supports_list_models,
            "health": True,
        }
        for hook, flag in flags.items():
            implemented = harness.implements(hook)
            if hook == "health":
                assert implemented, "every backend must implement the health hook"
            elif flag:
                assert implemented, f"supports_{hook} is true but the plugin has no {hook!r} hook"
            else:
                assert not implemented, (
                    f"the plugin implements {hook!r} but the capability flag is false: set it "
                    f"to true and give the kit a fake upstream (mock_{hook})"
                )
        assert not (self.supports_stream and not self.supports_chat), (
            "supports_stream needs supports_chat"
        )

    # ------------------------------------------------------------------- the checks: success

    def test_chat(self) -> None:
        """`chat` returns a `ChatResponse` whose first choice has text, after one request."""
        if not self.supports_chat:
            self._assert_returns_none_or_unsupported("chat", self._chat_request())
            return

        async def scenario(h, config, http, transport):
            result = await h.call("chat", request=self._chat_request(), config=config, http=http)
            assert isinstance(result, ChatResponse), (
                f"chat must return a ChatResponse, got {type(result).__name__}"
            )
            assert result.choices, "a chat response needs at least one choice"
            content = result.choices[0].message.content
            assert isinstance(content, str), "the first choice has no text content"
            assert content, "the first choice has empty content"
            if self.talks_http:
                assert transport.requests, "chat made no request to the (fake) upstream"
            self._assert_closed(transport, "chat")

        self._run(self._upstream_handler("chat"), scenario)

    def test_chat_stream(self) -> None:
        """A chat stream yields `ChatChunk`s carrying the text and releases its upstream answer
        once consumed."""
        if not self.supports_chat:
            return self._assert_returns_none_or_unsupported("chat", self._chat_request(True))
        if not self.supports_stream:

            async def refuse(h, config, http, transport):
                try:
                    result = await h.call(
                        "chat", request=self._chat_request(True), config=config, http=http
                    )
                    await drain(result)
                except CapabilityNotSupported:
                    pass
                else:
                    pytest.fail("supports_stream is false but a stream was served")
                self._assert_closed(transport, "refused stream")

            return self._run(self._upstream_handler("chat"), refuse)

        async def scenario(h, config, http, transport):
            result = await h.call(
                "chat", request=self._chat_request(True), config=config, http=http
            )
            chunks = await drain(result)
            assert chunks, "the stream yielded no chunk"
            for chunk in chunks:
                assert isinstance(chunk, ChatChunk), (
                    f"a chat stream must yield ChatChunk objects, got {type(chunk).__name__}"
                )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text, "the stream carried no content"
            self._assert_closed(transport, "a fully consumed stream")

        self._run(self._upstream_handler("chat_stream"), scenario)

    def test_chat_stream_closed_early_releases_upstream(self) -> None:
        """A stream closed after its first chunk (`aclose()`) releases its upstream answer."""
        if not (self.supports_chat and self.supports_stream):
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            result = await h.call(
                "chat", request=self._chat_request(True), config=config, http=http
            )
            first = await result.__anext__()
            assert isinstance(first, ChatChunk)
            assert hasattr(result, "aclose"), "a stream must support aclose() (an async generator)"
            await result.aclose()
            self._assert_closed(transport, "a stream closed after its first chunk")

        self._run(self._upstream_handler("chat_stream"), scenario)

    @pytest.mark.parametrize("how", ["eof", "error"])
    def test_chat_stream_truncated_raises(self, how: str) -> None:
        """A stream cut short (the body ends, or the connection breaks) raises a taxonomy error,
        never ends as if complete."""
        if not (self.supports_chat and self.supports_stream and self.talks_http):
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            try:
                result = await h.call(
                    "chat", request=self._chat_request(True), config=config, http=http
                )
                await drain(result)
            except InferenceError:
                pass
            else:
                pytest.fail(
                    "a stream cut after its first event ended silently: raise an "
                    "inference_core.errors class (BackendUnavailable) instead"
                )
            assert transport.responses, "the stream made no upstream request"
            self._assert_closed(transport, "a truncated stream")

        self._run(self._upstream_handler("chat_stream"), scenario, truncate=how)

    def test_stream_usage_chunk_when_asked(self) -> None:
        """With `stream_options.include_usage`, a stream ends with a chunk whose `choices` is
        `[]` and whose `usage` is set."""
        if not (self.supports_chat and self.supports_stream):
            return self.test_capability_flags_match_the_hooks()
        request = self._chat_request(True, **STREAM_FIELDS)

        async def scenario(h, config, http, transport):
            result = await h.call("chat", request=request, config=config, http=http)
            chunks = await drain(result)
            assert chunks, "the stream yielded no chunk"
            last = chunks[-1]
            usage_chunk = isinstance(last, ChatChunk) and last.choices == [] and last.usage
            assert usage_chunk, (
                "stream_options.include_usage was asked but the stream did not end with the "
                "usage chunk (choices == [], usage set): forward stream_options to the "
                "upstream and relay its last chunk, or build that chunk yourself (a server "
                "with another protocol than OpenAI's needs its own `wire`)"
            )
            self._assert_closed(transport, "a stream with usage")

        self._run(self._wire_handler("chat_stream", "chat_stream"), scenario)

    def test_stream_in_band_error_raises(self) -> None:
        """An error event inside a stream (`data: {"error": ...}`, then the end marker) raises a
        taxonomy error from the iterator, never ends the stream as if complete."""
        if not (self.supports_chat and self.supports_stream and self.talks_http):
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            chunks: list[Any] = []
            try:
                result = await h.call(
                    "chat", request=self._chat_request(True), config=config, http=http
                )
                async for chunk in result:
                    chunks.append(chunk)
            except InferenceError:
                pass
            else:
                pytest.fail(
                    f"the upstream sent an in-band error event after {len(chunks)} chunk(s) "
                    "but the stream ended normally: a failed generation passed off as a "
                    "complete (truncated) answer. Raise inference_core.http.error_for_event("
                    "payload['error'], backend=...) when an event carries an error"
                )
            self._assert_closed(transport, "a stream with an in-band error")

        self._run(self._wire_handler("chat_stream", "stream_error"), scenario)

    def test_request_fields_forwarded(self) -> None:
        """The upstream receives the request's `stream_options`, `tools`, `tool_choice`,
        `response_format`, `seed`, `stop` and backend-specific extras."""
        if not (self.supports_chat or self.supports_complete) or not self.talks_http:
            return self.test_capability_flags_match_the_hooks()
        cases: list[tuple[str, str, Any, dict[str, Any], str]] = []
        if self.supports_chat:
            cases.append(("chat", "chat", self._chat_request(**CHAT_FIELDS), CHAT_FIELDS, "chat"))
            if self.supports_stream:
                req = self._chat_request(True, **STREAM_FIELDS)
                cases.append(("chat (stream)", "chat", req, STREAM_FIELDS, "chat_stream"))
        if self.supports_complete:
            req = self._complete_request(**COMPLETE_FIELDS)
            cases.append(("complete", "complete", req, COMPLETE_FIELDS, "complete"))
        skipped = self.wire.not_forwarded
        problems: list[str] = []
        for label, hook, request, wanted, mock in cases:

            async def scenario(h, config, http, transport, hook=hook, request=request):
                result = await h.call(hook, request=request, config=config, http=http)
                if hasattr(result, "__anext__"):
                    await drain(result)
                return self._sent(transport)

            sent = self._run(self._wire_handler(mock, mock), scenario)
            if not sent:
                problems.append(f"{label}: {self._no_request()}")
                continue
            for name, value in wanted.items():
                if name in skipped:
                    continue
                if sent[-1].get(name) != value:
                    problems.append(
                        f"{label}: the upstream received {name}={sent[-1].get(name)!r}, the "
                        f"client sent {value!r}"
                    )
        assert not problems, (
            "\n".join(problems)
            + "\nforward every request field (extras included: request.model_dump("
            "exclude_none=True)); a field your upstream has no place for goes into your "
            "wire's not_forwarded with the reason"
        )

    def test_model_alias_on_the_wire(self) -> None:
        """The upstream receives `config.model_for(alias)` for an alias of
        `INFERENCE_<NAME>_ALIASES`, and a concrete model name exactly as asked."""
        cases: list[tuple[str, str, Callable[[str], Any], str]] = []
        if self.supports_chat:
            cases.append(("chat", "chat", lambda m: self._chat_request(model=m), "chat"))
            if self.supports_stream:
                cases.append(
                    (
                        "chat (stream)",
                        "chat",
                        lambda m: self._chat_request(True, model=m),
                        "chat_stream",
                    )
                )
        if self.supports_embeddings:
            cases.append(
                ("embed", "embed", lambda m: EmbeddingRequest(model=m, input=["a"]), "embed")
            )
        if self.supports_complete:
            cases.append(
                ("complete", "complete", lambda m: self._complete_request(model=m), "complete")
            )
        if not cases:
            return self.test_capability_flags_match_the_hooks()
        base = self.backend_config()
        config = base.model_copy(update={"aliases": {**base.aliases, ALIAS: ALIAS_TARGET}})
        problems: list[str] = []
        for requested in (ALIAS, CONCRETE_MODEL):
            expected = config.model_for(requested)
            for label, hook, make, mock in cases:

                async def scenario(h, cfg, http, transport, hook=hook, make=make, req=requested):
                    result = await h.call(hook, request=make(req), config=cfg, http=http)
                    if hasattr(result, "__anext__"):
                        result = await drain(result)
                    return result, self._sent(transport)

                result, sent = self._run(self._wire_handler(mock, mock), scenario, config=config)
                if not self.talks_http:  # no wire: the answer names the model it used
                    got = [(result[0] if isinstance(result, list) else result).model]
                elif not sent:
                    problems.append(f"{label}: {self._no_request()}")
                    continue
                else:
                    got = [fields.get("model") for fields in sent]
                if any(model != expected for model in got):
                    problems.append(
                        f"{label}: asked for {requested!r}, the upstream received "
                        f"{got[-1]!r}; expected config.model_for({requested!r}) == {expected!r}"
                    )
        assert not problems, "\n".join(problems)

    def test_embeddings_order_and_count(self) -> None:
        """`embed` returns one vector per input, in input order, `index` 0..n-1."""
        inputs = ["alpha", "beta", "gamma"]
        request = EmbeddingRequest(model=self.request_model, input=inputs)
        if not self.supports_embeddings:
            return self._assert_returns_none_or_unsupported("embed", request)

        async def scenario(h, config, http, transport):
            result = await h.call("embed", request=request, config=config, http=http)
            assert isinstance(result, EmbeddingResponse), (
                f"embed must return an EmbeddingResponse, got {type(result).__name__}"
            )
            self._assert_vectors(result, inputs, dims=8, b64=False)
            self._assert_closed(transport, "embed")

        self._run(self._upstream_handler("embed"), scenario)

    def test_embeddings_placed_by_index(self) -> None:
        """Each vector goes where the upstream's `index` says (answers may come out of order),
        and duplicate inputs each get their vector."""
        request = EmbeddingRequest(model=self.request_model, input=EMBED_INPUTS)
        if not self.supports_embeddings:
            return self._assert_returns_none_or_unsupported("embed", request)

        async def scenario(h, config, http, transport):
            result = await h.call("embed", request=request, config=config, http=http)
            assert isinstance(result, EmbeddingResponse)
            self._assert_vectors(result, EMBED_INPUTS, dims=8, b64=False)

        self._run(self._wire_handler("embed", "embed"), scenario)

    def test_embeddings_fields_forwarded(self) -> None:
        """`encoding_format` and `dimensions` reach the upstream, and the answer honours them
        (base64: little-endian float32)."""
        request = EmbeddingRequest(
            model=self.request_model,
            input=["alpha", "beta"],
            encoding_format="base64",
            dimensions=4,
        )
        if not self.supports_embeddings:
            return self._assert_returns_none_or_unsupported("embed", request)

        async def scenario(h, config, http, transport):
            result = await h.call("embed", request=request, config=config, http=http)
            assert isinstance(result, EmbeddingResponse)
            if self.talks_http:
                sent = self._sent(transport)
                assert sent, f"embed: {self._no_request()}"
                for name in ("encoding_format", "dimensions"):
                    if name not in self.wire.not_forwarded:
                        assert sent[-1].get(name) == getattr(request, name), (
                            f"the upstream received {name}={sent[-1].get(name)!r}, the client "
                            f"sent {getattr(request, name)!r}"
                        )
            self._assert_vectors(result, ["alpha", "beta"], dims=4, b64=True)

        self._run(self._wire_handler("embed", "embed"), scenario)

    @staticmethod
    def _assert_vectors(
        result: EmbeddingResponse, inputs: list[str], *, dims: int, b64: bool
    ) -> None:
        assert len(result.data) == len(inputs), (
            f"{len(inputs)} inputs gave {len(result.data)} embeddings (never de-duplicate or "
            "drop inputs)"
        )
        assert [e.index for e in result.data] == list(range(len(inputs))), (
            "embeddings must be in input order with index 0..n-1, got indexes "
            f"{[e.index for e in result.data]}"
        )
        for item, text in zip(result.data, inputs, strict=True):
            want = canned.embedding_for(text, dims=dims)
            if b64:
                got = _decode_base64(item.embedding)
                assert got is not None, (
                    "encoding_format='base64' was asked but the embedding is a list of floats"
                )
            else:
                got = item.embedding  # type: ignore[assignment]
                assert isinstance(got, list), (
                    "floats were asked (no encoding_format) but the embedding is a string"
                )
            # float32 precision: an SDK may fetch base64 and decode it for you
            close = len(got) == len(want) and all(
                abs(a - b) <= 1e-6 for a, b in zip(got, want, strict=True)
            )
            assert close, (
                f"the vector at index {item.index} is not the one the upstream gave for "
                f"{text!r}: place each vector by the upstream's index (build fake vectors "
                "with inference_core.testing.canned.embedding_for)"
            )

    def test_complete(self) -> None:
        """`complete` returns a `CompletionResponse` with text (only when the flag is set)."""
        request = self._complete_request()
        if not self.supports_complete:
            return self._assert_returns_none_or_unsupported("complete", request)

        async def scenario(h, config, http, transport):
            result = await h.call("complete", request=request, config=config, http=http)
            assert isinstance(result, CompletionResponse), (
                f"complete must return a CompletionResponse, got {type(result).__name__}"
            )
            assert result.choices, "the completion has no choice"
            assert result.choices[0].text, "the completion has no text"
            self._assert_closed(transport, "complete")

        self._run(self._upstream_handler("complete"), scenario)

    def test_list_models(self) -> None:
        """`list_models` returns a non-empty list of `ModelInfo`."""
        if not self.supports_list_models:
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            result = await h.call("list_models", config=config, http=http)
            assert isinstance(result, list), "list_models must return a list"
            assert result, "list_models returned no model"
            for item in result:
                assert isinstance(item, ModelInfo), (
                    f"list_models must return ModelInfo objects, got {type(item).__name__}"
                )
            self._assert_closed(transport, "list_models")

        self._run(self._upstream_handler("list_models"), scenario)

    def test_health_ready(self) -> None:
        """A healthy upstream gives `Health(state="ready")`, with no secret in it."""

        async def scenario(h, config, http, transport):
            result = await h.call("health", config=config, http=http)
            assert isinstance(result, Health), (
                f"health must return a Health, got {type(result).__name__}"
            )
            assert result.state == "ready", f"a healthy upstream gave state {result.state!r}"
            assert not self._leaks(json.dumps(result.model_dump(), default=str), config), (
                "the ready health answer leaks a secret (API key or secret option)"
            )
            self._assert_closed(transport, "health")

        self._run(self._upstream_handler("health"), scenario)

    # --------------------------------------------------------------------- the checks: errors

    @pytest.mark.parametrize("failure", FAILURES)
    def test_health_never_raises(self, failure: str) -> None:
        """`health` never raises: every failure becomes a `Health` (down, or loading on a 5xx
        where the backend says so), without a secret."""

        async def scenario(h, config, http, transport):
            try:
                result = await h.call("health", config=config, http=http)
            except Exception as exc:  # the check itself
                pytest.fail(f"health raised {type(exc).__name__} on {failure}: it must never raise")
            assert isinstance(result, Health)
            assert not self._leaks(json.dumps(result.model_dump(), default=str), config), (
                f"the health answer on {failure} leaks a secret"
            )
            if not self.talks_http:
                return
            if failure in ("connect", "timeout"):
                assert result.state == "down", f"{failure}: expected state 'down'"
            elif failure[0] == "5":
                assert result.state in self.health_states_on_5xx, (
                    f"HTTP {failure}: expected one of {self.health_states_on_5xx}"
                )
            elif failure[0] == "4":
                assert result.state != "ready", f"HTTP {failure} reported as ready"
            self._assert_closed(transport, f"health on {failure}")

        self._run(failing_handler(failure), scenario)

    @pytest.mark.parametrize("failure", FAILURES)
    def test_error_mapping(self, failure: str) -> None:
        """Each upstream failure raises the taxonomy error the router needs (table in
        CONTRIBUTING), with `retry_after` from `Retry-After` (seconds or date) or
        `retry-after-ms`."""
        expected = EXPECTED_ERRORS[failure]
        names = " or ".join(c.__name__ for c in expected)

        async def scenario(h, config, http, transport):
            problems = []
            for label, hook, kwargs in self._calls():
                before = transport.mark()
                try:
                    result = await h.call(hook, config=config, http=http, **kwargs)
                    if hasattr(result, "__anext__"):
                        await drain(result)
                except InferenceError as exc:
                    error: InferenceError | None = exc
                except Exception as exc:
                    problems.append(
                        f"{label}: raised {type(exc).__name__} ({exc}), not a taxonomy error"
                    )
                    continue
                else:
                    error = None
                if not self.talks_http:
                    if transport.since(before):
                        problems.append(f"{label}: talks_http is false but it made a request")
                    continue
                if error is None:
                    problems.append(f"{label}: returned normally on {failure}; expected {names}")
                    continue
                if not any(
                    isinstance(error, cls)
                    and (error.retryable, error.fallback) == (cls.retryable, cls.fallback)
                    for cls in expected
                ):
                    problems.append(
                        f"{label}: {failure} raised {type(error).__name__}, expected {names} "
                        "(use inference_core.http.error_for_response / error_for_exception)"
                    )
                    continue
                if failure in RETRY_AFTER:
                    low, high = RETRY_AFTER[failure]
                    got = getattr(error, "retry_after", None)
                    if not isinstance(got, int | float) or not low - 0.01 <= got <= high + 0.01:
                        problems.append(
                            f"{label}: {failure} gave retry_after={got!r}, expected "
                            f"{low:g}..{high:g} s (inference_core.http.parse_retry_after)"
                        )
                text = str(error) + json.dumps(error.to_openai(), default=str)
                if self._leaks(text, config):
                    problems.append(f"{label}: the error message leaks a secret")
                if transport.unclosed():
                    problems.append(f"{label}: an upstream response was left open on {failure}")
            assert not problems, "\n".join(problems)

        self._run(failing_handler(failure), scenario)

    @pytest.mark.parametrize("failure", FAILURES)
    def test_stream_refusal_before_first_chunk(self, failure: str) -> None:
        """A stream the upstream refuses raises from the hook call or the first `__anext__`,
        before any chunk, so the router can still retry or fall back."""
        calls = self._stream_calls()
        if not calls or not self.talks_http:
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            problems = []
            for label, hook, kwargs in calls:
                yielded = 0
                try:
                    result = await h.call(hook, config=config, http=http, **kwargs)
                    async for _ in result:
                        yielded += 1
                except InferenceError:
                    pass
                except Exception as exc:
                    problems.append(f"{label}: raised {type(exc).__name__}, not a taxonomy error")
                else:
                    problems.append(f"{label}: the stream ended normally on {failure}")
                if yielded:
                    problems.append(
                        f"{label}: yielded {yielded} chunk(s) before raising on {failure}: the "
                        "client then gets HTTP 200 and an error, the router can neither retry "
                        "nor fall back. Check the status (and read the first event) before "
                        "yielding anything"
                    )
            assert not problems, "\n".join(problems)

        self._run(failing_handler(failure), scenario)

    @pytest.mark.parametrize("failure", RETRYABLE_FAILURES)
    def test_no_retry_inside_the_plugin(self, failure: str) -> None:
        """A hook sends each upstream request once per call: on a failure it raises, and the
        router decides on retries and fallbacks."""
        if not self.talks_http:
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            problems = []
            for label, hook, kwargs in self._calls(health=True):
                mark = transport.mark()
                try:
                    result = await h.call(hook, config=config, http=http, **kwargs)
                    if hasattr(result, "__anext__"):
                        await drain(result)
                except Exception:
                    pass  # what it raised is test_error_mapping's business
                counts: dict[tuple[str, str], int] = {}
                for record in transport.since(mark):
                    key = (record.method, record.path)
                    counts[key] = counts.get(key, 0) + 1
                for (method, path), n in counts.items():
                    if n > 1:
                        problems.append(
                            f"{label}: sent {method} {path} {n} times on {failure}: a plugin "
                            "that retries multiplies the router's retries and delays every "
                            "fallback. Raise the error at once"
                        )
            assert not problems, "\n".join(problems)

        self._run(failing_handler(failure), scenario)

    # ------------------------------------------------------------------ the checks: ownership

    def test_no_secret_in_logs_health_or_errors(self) -> None:
        """No secret (API key, `*_KEY` / `*_TOKEN` / `*_SECRET` options) appears in a log record
        of any level, a request URL, a `Health` or an error, on success or failure."""
        runs: list[tuple[str, Callable[[httpx.Request], Any]]] = []
        for label, hook, _ in self._calls(health=True):
            mock = {"chat (stream)": "chat_stream", "complete (stream)": "complete"}.get(label)
            runs.append((f"{label} (success)", self._upstream_handler(mock or hook)))
        for failure in ("401", "403", "400", "429", "500", "connect"):
            runs.append((failure, failing_handler(failure)))
        problems: list[str] = []
        with capture_logs() as logs:
            for what, handler in runs:

                async def scenario(h, config, http, transport, what=what):
                    for label, hook, kwargs in self._calls(health=True):
                        try:
                            result = await h.call(hook, config=config, http=http, **kwargs)
                            if hasattr(result, "__anext__"):
                                result = await drain(result)
                        except InferenceError as exc:
                            result = [str(exc), exc.to_openai()]
                        except Exception as exc:  # test_error_mapping reports these
                            result = [str(exc)]
                        if self._leaks(json.dumps(result, default=_dump), config):
                            problems.append(f"{label} on {what}: the result or error leaks")
                    for record in transport.responses:
                        if self._leaks(str(record.request.url), config):
                            problems.append("a request URL carries a secret: put it in a header")
                    return config

                config = self._run(handler, scenario)
                for text in logs.texts:
                    if self._leaks(text, config):
                        problems.append(f"a log record leaks a secret: {text[:200]!r}")
                        break
                logs.texts.clear()
        assert not problems, "\n".join(dict.fromkeys(problems))

    def test_shared_client_left_open(self) -> None:
        """No hook closes the shared `http` client (the router's, in the state the router hands
        it over), on success, failure or a stream closed early."""
        for label, hook, kwargs in self._calls(health=True):
            mock = {"chat (stream)": "chat_stream", "complete (stream)": "complete"}.get(label)

            for early in (False, True) if mock else (False,):

                async def scenario(h, config, http, transport, hook=hook, kw=kwargs, early=early):
                    try:
                        result = await h.call(hook, config=config, http=http, **kw)
                        if early:  # a client that hangs up after the first chunk
                            await result.__anext__()
                            await result.aclose()
                        elif hasattr(result, "__anext__"):
                            await drain(result)
                    except InferenceError:
                        pass

                self._run(self._upstream_handler(mock or hook), scenario)
            self._run(failing_handler("500"), scenario)

    # ------------------------------------------------------------------------------- helpers

    # ----------------------------------------------------------- native protocols (optional)

    def test_native_protocols_declared(self) -> None:
        """The protocols a plugin declares it answers natively (`native_protocols`) are known
        ones, and the ones the test class says (`native_protocols` there too).

        A plugin declares a native protocol only when it keeps that protocol exactly; the
        gateway then hands it the original request instead of translating it.
        """
        from ..protocols import native

        declared = set(getattr(self.plugin, "native_protocols", None) or ())
        assert declared == set(self.native_protocols), (
            f"the plugin declares native_protocols={sorted(declared)} but the kit was told "
            f"{sorted(self.native_protocols)}: set native_protocols on the test class"
        )
        unknown = declared - set(native.PROTOCOLS)
        assert not unknown, f"unknown native protocols {sorted(unknown)}; known: {native.PROTOCOLS}"

    @pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
    @pytest.mark.parametrize("protocol", ["anthropic.messages", "openai.responses"])
    def test_native_protocol_answers_keep_the_protocol(self, protocol: str, stream: bool) -> None:
        """A declared native protocol: answers in shape and event order (protocols.validate);
        undeclared: the chat hook ignores the offer and answers chat objects."""
        from ..protocols import native, validate

        body: dict[str, Any] = (
            {
                "model": ALIAS,
                "max_tokens": 16,
                "stream": stream,
                "messages": [{"role": "user", "content": "Say hello"}],
            }
            if protocol == "anthropic.messages"
            else {
                "model": ALIAS,
                "stream": stream,
                "store": False,
                "input": [{"type": "message", "role": "user", "content": "Say hello"}],
            }
        )
        declared = protocol in self.native_protocols
        if not self.supports_chat or (stream and not self.supports_stream):
            return

        async def scenario(h, config, http, transport):
            native.offer(native.NativeRequest(protocol, lambda: dict(body), stream))
            try:
                result = await h.call(
                    "chat", request=self._chat_request(stream), config=config, http=http
                )
                items = await drain(result) if stream else [result]
            finally:
                native.offer(None)
            if not declared:
                kinds = (ChatChunk,) if stream else (ChatResponse,)
                assert all(isinstance(i, kinds) for i in items), (
                    f"{protocol} is not declared native, but chat answered "
                    f"{type(items[0]).__name__}"
                )
                return
            if stream:
                assert all(isinstance(i, native.NativeEvent) for i in items), (
                    "a native stream must yield NativeEvent objects"
                )
                data = b"".join(i.raw or b"" for i in items)
                check = (
                    validate.check_messages_stream
                    if protocol == "anthropic.messages"
                    else validate.check_responses_stream
                )
                check(data)
            else:
                assert isinstance(items[0], native.NativeAnswer), "a native answer: NativeAnswer"
                obj = json.loads(items[0].raw or b"null")
                if protocol == "anthropic.messages":
                    validate.check_message(obj)
                else:
                    validate.check_response(obj)
            self._assert_closed(transport, f"native {protocol}")

        handler = self._upstream_handler("chat_stream" if stream else "chat")
        if declared:
            import respx

            router = respx.Router(base_url=self.base_url, assert_all_called=False)
            self.mock_native(router, protocol, stream)
            handler = router.async_handler
        self._run(handler, scenario)

    def _assert_returns_none_or_unsupported(self, hook: str, request: Any) -> None:
        async def scenario(h, config, http, transport):
            try:
                result = await h.call(hook, request=request, config=config, http=http)
            except CapabilityNotSupported:
                return
            except InferenceError as exc:
                pytest.fail(
                    f"{hook!r} tried to serve ({type(exc).__name__}) although its capability "
                    "flag is false: raise CapabilityNotSupported, or set the flag"
                )
            assert result is None, f"{hook!r} answered although its capability flag is false"

        self._run(failing_handler("connect"), scenario)


def _dump(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else str(value)
