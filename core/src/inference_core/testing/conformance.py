"""``BackendConformance``: the checks every backend plugin must pass.

See :mod:`inference_core.testing` for how to use it.  The checks are plain synchronous pytest
tests that run their coroutine with ``asyncio.run``, so they need no asyncio plugin or mode.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import httpx
import pluggy
import pytest

from .. import hookspecs
from ..errors import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    CapabilityNotSupported,
    InferenceError,
    RateLimited,
)
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
from .transport import FAILURES, TrackingTransport, failing_handler

__all__ = ["BackendConformance", "HookHarness", "hook_implementations", "make_config"]

_SPEC_ARGS = {
    name: tuple(inspect.signature(getattr(hookspecs, name)).parameters)
    for name in hookspecs.HOOK_NAMES
}

#: failure -> (expected error class, extra check)
_EXPECTED: dict[str, type[InferenceError]] = {
    "connect": BackendUnavailable,
    "timeout": BackendTimeout,
    "429": RateLimited,
    "500": BackendUnavailable,
    "503": BackendUnavailable,
    "400": BadRequest,
    "401": AuthenticationFailed,
}

SECRET = "sk-conformance-SECRET-d0n0tl3ak"
ALIAS = "conformance-alias"


def make_config(
    name: str = "test",
    *,
    base_url: str | tuple[str, ...] | None = "http://upstream.test",
    model: str | None = "upstream-model",
    api_key: str | None = None,
    timeout: float = 5.0,
    connect_timeout: float = 1.0,
    aliases: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> BackendConfig:
    """A :class:`BackendConfig` for tests (``api_key`` and ``*key/token/secret`` options secret)."""
    from pydantic import SecretStr

    urls: tuple[str, ...]
    if base_url is None:
        urls = ()
    elif isinstance(base_url, str):
        urls = (base_url,)
    else:
        urls = tuple(base_url)
    opts: dict[str, Any] = {}
    for key, value in (options or {}).items():
        key = key.lower()
        secret = key.endswith(("key", "token", "secret")) and not isinstance(value, SecretStr)
        opts[key] = SecretStr(str(value)) if secret else value
    return BackendConfig(
        name=name,
        base_urls=urls,
        model=model,
        api_key=SecretStr(api_key) if api_key else None,
        timeout=timeout,
        connect_timeout=connect_timeout,
        aliases=dict(aliases or {}),
        options=opts,
    )


def hook_implementations(plugin: object) -> dict[str, Callable[..., Any]]:
    """Every attribute of ``plugin`` marked with ``@inference_core.hookimpl``, by hook name."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    found: dict[str, Callable[..., Any]] = {}
    for attr in dir(plugin):
        try:
            value = getattr(plugin, attr)
        except Exception:  # a property that raises is not a hook
            continue
        opts = getattr(value, marker, None)
        if isinstance(opts, dict):
            found[opts.get("specname") or attr] = value
    return found


class HookHarness:
    """A plugin manager holding one plugin, with an ``await``-able ``call``."""

    def __init__(self, plugin: object, name: str) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(plugin, name=name)
        self.name = name

    def implements(self, hook: str) -> bool:
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    async def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` with the spec's arguments; ``None`` when the plugin lacks it."""
        result = getattr(self.pm.hook, hook)(**{k: kwargs.get(k) for k in _SPEC_ARGS[hook]})
        if result is None:
            return None
        assert inspect.isawaitable(result), (
            f"hook {hook!r} of {self.name!r} returned {type(result).__name__}, not a coroutine: "
            "declare it with `async def`"
        )
        return await result


async def _drain(result: Any) -> list[Any]:
    assert hasattr(result, "__anext__"), (
        f"a streaming call must return an async iterator, got {type(result).__name__}"
    )
    return [item async for item in result]


class BackendConformance:
    """Subclass as ``class TestMyBackendConformance(BackendConformance)`` and set:

    * ``plugin``: the plugin object or module (what the entry point points at);
    * ``backend_name``; ``model`` (what ``config.model`` is), ``base_url`` of the fake upstream;
    * capability flags ``supports_chat``, ``supports_stream``, ``supports_embeddings``,
      ``supports_complete``, ``supports_list_models``; ``talks_http = False`` for a backend that
      makes no HTTP call at all (error-mapping checks then assert that it makes none);
    * the fake upstream: ``mock_chat(upstream)``, ``mock_chat_stream(upstream)``,
      ``mock_embed(upstream)``, ``mock_complete(upstream)``, ``mock_health(upstream)``,
      ``mock_list_models(upstream)`` register routes on ``upstream`` (a ``respx.Router`` whose
      ``base_url`` is ``self.base_url``), or override ``handler(self, request) -> httpx.Response``
      to answer every success scenario yourself.
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

    def _run(
        self,
        handler: Callable[[httpx.Request], Any],
        scenario: Callable[
            [HookHarness, BackendConfig, httpx.AsyncClient, TrackingTransport], Awaitable[Any]
        ],
        *,
        truncate: str | None = None,
    ) -> Any:
        assert self.plugin is not None, f"{type(self).__name__}.plugin is not set"
        harness = HookHarness(self.plugin, self.backend_name)
        config = self.backend_config()

        async def main() -> Any:
            transport = TrackingTransport(httpx.MockTransport(handler), truncate=truncate)  # type: ignore[arg-type]
            async with create_client(transport=transport) as http:
                result = await scenario(harness, config, http, transport)
                assert not http.is_closed, (
                    "a hook closed the shared `http` client: core owns it, never close it"
                )
                return result

        return asyncio.run(main())

    @staticmethod
    def _chat_request(stream: bool = False) -> ChatRequest:
        return ChatRequest(
            model=ALIAS,
            messages=[{"role": "user", "content": "Say hello"}],
            stream=stream,
            max_tokens=16,
        )

    def _check_model_mapping(self, transport: TrackingTransport) -> None:
        """The upstream must receive the backend's model, never the client's alias."""
        for req in transport.requests:
            try:
                body = json.loads(req.content or b"null")
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(body, dict) and "model" in body and self.model:
                assert body["model"] != ALIAS, (
                    f"the upstream received the client's model alias {ALIAS!r}: map it with "
                    "config.model_for(request.model)"
                )

    def _assert_closed(self, transport: TrackingTransport, what: str) -> None:
        leaked = transport.unclosed()
        assert not leaked, (
            f"{what}: {len(leaked)} upstream response(s) never closed "
            f"({', '.join(str(t.request.url) for t in leaked)}); close it (async with / aclose)"
        )

    # ------------------------------------------------------------------------ the checks: shape

    def test_hooks_are_known_async_and_without_defaults(self) -> None:
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
            self._check_model_mapping(transport)
            self._assert_closed(transport, "chat")

        self._run(self._upstream_handler("chat"), scenario)

    def test_chat_stream(self) -> None:
        if not self.supports_chat:
            return self._assert_returns_none_or_unsupported("chat", self._chat_request(True))
        if not self.supports_stream:

            async def refuse(h, config, http, transport):
                try:
                    result = await h.call(
                        "chat", request=self._chat_request(True), config=config, http=http
                    )
                    await _drain(result)
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
            chunks = await _drain(result)
            assert chunks, "the stream yielded no chunk"
            for chunk in chunks:
                assert isinstance(chunk, ChatChunk), (
                    f"a chat stream must yield ChatChunk objects, got {type(chunk).__name__}"
                )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text, "the stream carried no content"
            self._check_model_mapping(transport)
            self._assert_closed(transport, "a fully consumed stream")

        self._run(self._upstream_handler("chat_stream"), scenario)

    def test_chat_stream_closed_early_releases_upstream(self) -> None:
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
        if not (self.supports_chat and self.supports_stream and self.talks_http):
            return self.test_capability_flags_match_the_hooks()

        async def scenario(h, config, http, transport):
            try:
                result = await h.call(
                    "chat", request=self._chat_request(True), config=config, http=http
                )
                await _drain(result)
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

    def test_embeddings_order_and_count(self) -> None:
        inputs = ["alpha", "beta", "gamma"]
        request = EmbeddingRequest(model=ALIAS, input=inputs)
        if not self.supports_embeddings:
            return self._assert_returns_none_or_unsupported("embed", request)

        async def scenario(h, config, http, transport):
            result = await h.call("embed", request=request, config=config, http=http)
            assert isinstance(result, EmbeddingResponse), (
                f"embed must return an EmbeddingResponse, got {type(result).__name__}"
            )
            assert len(result.data) == len(inputs), (
                f"{len(inputs)} inputs gave {len(result.data)} embeddings"
            )
            assert [e.index for e in result.data] == list(range(len(inputs))), (
                "embeddings must be in input order with index 0..n-1"
            )
            for item, text in zip(result.data, inputs, strict=True):
                assert item.embedding == canned.embedding_for(text), (
                    f"the vector at index {item.index} is not the one the upstream gave for "
                    f"{text!r} (build fake vectors with inference_core.testing.canned."
                    "embedding_for, and keep the input order)"
                )
            self._check_model_mapping(transport)
            self._assert_closed(transport, "embed")

        self._run(self._upstream_handler("embed"), scenario)

    def test_complete(self) -> None:
        request = CompletionRequest(model=ALIAS, prompt="Once upon a time", max_tokens=8)
        if not self.supports_complete:
            return self._assert_returns_none_or_unsupported("complete", request)

        async def scenario(h, config, http, transport):
            result = await h.call("complete", request=request, config=config, http=http)
            assert isinstance(result, CompletionResponse), (
                f"complete must return a CompletionResponse, got {type(result).__name__}"
            )
            assert result.choices, "the completion has no choice"
            assert result.choices[0].text, "the completion has no text"
            self._check_model_mapping(transport)
            self._assert_closed(transport, "complete")

        self._run(self._upstream_handler("complete"), scenario)

    def test_list_models(self) -> None:
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
        async def scenario(h, config, http, transport):
            result = await h.call("health", config=config, http=http)
            assert isinstance(result, Health), (
                f"health must return a Health, got {type(result).__name__}"
            )
            assert result.state == "ready", f"a healthy upstream gave state {result.state!r}"
            self._assert_closed(transport, "health")

        self._run(self._upstream_handler("health"), scenario)

    # --------------------------------------------------------------------- the checks: errors

    @pytest.mark.parametrize("failure", FAILURES)
    def test_health_never_raises(self, failure: str) -> None:
        async def scenario(h, config, http, transport):
            try:
                result = await h.call("health", config=config, http=http)
            except Exception as exc:  # the check itself
                pytest.fail(f"health raised {type(exc).__name__} on {failure}: it must never raise")
            assert isinstance(result, Health)
            if not self.talks_http:
                return
            if failure in ("connect", "timeout"):
                assert result.state == "down", f"{failure}: expected state 'down'"
            elif failure in ("500", "503"):
                assert result.state in self.health_states_on_5xx, (
                    f"HTTP {failure}: expected one of {self.health_states_on_5xx}"
                )
            else:
                assert result.state != "ready", f"HTTP {failure} reported as ready"
            if result.detail:
                assert SECRET not in result.detail, "the health detail leaks the API key"
            self._assert_closed(transport, f"health on {failure}")

        self._run(failing_handler(failure), scenario)

    @pytest.mark.parametrize("failure", FAILURES)
    def test_error_mapping(self, failure: str) -> None:
        expected = _EXPECTED[failure]
        calls: list[tuple[str, str, dict[str, Any]]] = []
        if self.supports_chat:
            calls.append(("chat", "chat", {"request": self._chat_request()}))
            if self.supports_stream:
                calls.append(("chat (stream)", "chat", {"request": self._chat_request(True)}))
        if self.supports_embeddings:
            calls.append(("embed", "embed", {"request": EmbeddingRequest(input=["a", "b"])}))
        if self.supports_complete:
            calls.append(("complete", "complete", {"request": CompletionRequest(prompt="x")}))
        if self.supports_list_models:
            calls.append(("list_models", "list_models", {}))

        async def scenario(h, config, http, transport):
            problems = []
            for label, hook, kwargs in calls:
                before = len(transport.responses)
                try:
                    result = await h.call(hook, config=config, http=http, **kwargs)
                    if hasattr(result, "__anext__"):
                        await _drain(result)
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
                    if len(transport.responses) != before:
                        problems.append(f"{label}: talks_http is false but it made a request")
                    continue
                if error is None:
                    problems.append(
                        f"{label}: returned normally on {failure}; expected {expected.__name__}"
                    )
                    continue
                if not isinstance(error, expected):
                    problems.append(
                        f"{label}: {failure} raised {type(error).__name__}, "
                        f"expected {expected.__name__}"
                    )
                    continue
                if failure == "429" and getattr(error, "retry_after", None) != 7:
                    problems.append(
                        f"{label}: 429 with Retry-After: 7 gave retry_after="
                        f"{getattr(error, 'retry_after', None)!r}, expected 7"
                    )
                if SECRET in str(error) or SECRET in json.dumps(error.to_openai(), default=str):
                    problems.append(f"{label}: the error message leaks the API key")
                if transport.unclosed():
                    problems.append(f"{label}: an upstream response was left open on {failure}")
            assert not problems, "\n".join(problems)

        self._run(failing_handler(failure), scenario)

    # ------------------------------------------------------------------------------- helpers

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
