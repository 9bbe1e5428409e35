"""The conformance kit passes a well-behaved plugin and fails broken ones, for the right reason."""

from __future__ import annotations

import textwrap

import httpx
import pytest

import inference_core
from inference_core.http import openai_compat
from inference_core.testing import (
    BackendConformance,
    HookHarness,
    TrackingTransport,
    canned,
    failing_handler,
    make_config,
)

pytest_plugins = ("pytester",)


class GoodPlugin:
    """A tiny OpenAI-compatible backend built on ``inference_core.http.openai_compat``."""

    @inference_core.hookimpl
    async def chat(self, request, config, http):
        return await openai_compat.chat(http, config, request)

    @inference_core.hookimpl
    async def embed(self, request, config, http):
        return await openai_compat.embed(http, config, request)

    @inference_core.hookimpl
    async def health(self, config, http):
        return await openai_compat.probe_health(http, config)

    @inference_core.hookimpl
    async def list_models(self, config, http):
        return await openai_compat.list_models(http, config)


class TestGoodPluginConformance(BackendConformance):
    plugin = GoodPlugin()
    backend_name = "good"
    supports_embeddings = True

    def mock_chat(self, upstream):
        upstream.post("/v1/chat/completions").respond(json=canned.chat_completion("Hi"))

    def mock_chat_stream(self, upstream):
        upstream.post("/v1/chat/completions").respond(
            content=canned.chat_stream(["Hel", "lo"]),
            headers={"content-type": "text/event-stream"},
        )

    def mock_embed(self, upstream):
        upstream.post("/v1/embeddings").mock(side_effect=canned.embeddings_handler)

    def mock_health(self, upstream):
        upstream.get("/health").respond(json={"status": "ok"})

    def mock_list_models(self, upstream):
        upstream.get("/v1/models").respond(json=canned.models(["m1", "m2"]))


class TestHandlerStyleConformance(BackendConformance):
    """The same plugin, with one ``handler`` instead of respx routes."""

    plugin = GoodPlugin()
    backend_name = "good_handler"
    supports_embeddings = True

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/chat/completions":
            if b'"stream":true' in request.content.replace(b" ", b""):
                return httpx.Response(200, content=canned.chat_stream())
            return httpx.Response(200, json=canned.chat_completion())
        if path == "/v1/embeddings":
            return canned.embeddings_handler(request)
        if path == "/v1/models":
            return httpx.Response(200, json=canned.models())
        return httpx.Response(200, json={"status": "ok"})


# ------------------------------------------------------------------------ helpers in isolation


def test_make_config_marks_secrets_and_replicas():
    cfg = make_config(
        "x",
        base_url=("http://a", "http://b/"),
        api_key="sk-1",
        options={"HF_TOKEN": "t", "mode": "m"},
    )
    assert cfg.base_urls == ("http://a", "http://b/")
    assert cfg.base_url == "http://a"
    assert cfg.secret() == "sk-1"
    assert "sk-1" not in repr(cfg)
    assert cfg.option("hf_token") == "t"
    assert "'t'" not in repr(cfg.options)
    assert cfg.options["mode"] == "m"


def test_embedding_for_is_deterministic_and_distinct():
    assert canned.embedding_for("a") == canned.embedding_for("a")
    assert canned.embedding_for("a") != canned.embedding_for("b")
    assert len(canned.embedding_for("a", dims=4)) == 4


async def test_tracking_transport_records_closing_and_truncates():
    body = canned.chat_stream(["a", "b"])
    transport = TrackingTransport(
        httpx.MockTransport(lambda r: httpx.Response(200, content=body)), truncate="eof"
    )
    async with (
        httpx.AsyncClient(transport=transport) as client,
        client.stream("GET", "http://x/") as response,
    ):
        assert transport.unclosed()
        data = await response.aread()
    assert data.count(b"data:") == 1
    assert not transport.unclosed()
    assert transport.requests[0].url == "http://x/"


async def test_failing_handler_maps_through_core_http():
    harness = HookHarness(GoodPlugin(), "good")
    transport = TrackingTransport(httpx.MockTransport(failing_handler("429")))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(inference_core.RateLimited) as info:
            await harness.call("list_models", config=make_config("good"), http=http)
    assert info.value.retry_after == 7
    assert harness.implements("chat")
    assert not harness.implements("complete")


async def test_harness_returns_none_for_a_missing_hook():
    harness = HookHarness(GoodPlugin(), "good")
    assert await harness.call("complete", request=None, config=make_config(), http=None) is None


def test_fixtures_of_the_pytest11_plugin(inference_config, inference_harness):
    cfg = inference_config("fx", model="m", aliases={"alias": "m2"})
    assert cfg.name == "fx"
    assert cfg.model_for("default") == "m"
    assert cfg.model_for("alias") == "m2"
    assert inference_harness(GoodPlugin(), "fx").implements("embed")


# ---------------------------------------------------------------- the kit fails broken plugins

BROKEN = '''
import asyncio
import inference_core
from inference_core.testing import BackendConformance, canned
from inference_core.http import openai_compat


class Leaky:
    """Each method breaks one rule; `mode` picks which."""

    def __init__(self, mode):
        self.mode = mode

    @inference_core.hookimpl
    async def chat(self, request, config, http):
        if self.mode == "alias":
            body = request.model_dump(exclude_none=True)   # forgets to map the alias
            return await openai_compat.chat(http, config, request, body=body)
        if self.mode == "raw_errors":
            r = await http.post(config.base_url + "/v1/chat/completions", json={})
            r.raise_for_status()                            # httpx errors leak out
            return await openai_compat.chat(http, config, request)
        if self.mode == "leak_stream" and request.stream:
            req = http.build_request("POST", config.base_url + "/v1/chat/completions")
            response = await http.send(req, stream=True)    # never closed, swallows truncation

            async def gen():
                from inference_core.models import ChatChunk
                import json
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        yield ChatChunk.model_validate(json.loads(line[6:]))
            return gen()
        return await openai_compat.chat(http, config, request)

    @inference_core.hookimpl
    async def embed(self, request, config, http):
        result = await openai_compat.embed(http, config, request)
        if self.mode == "reversed":
            result.data.reverse()
        return result

    @inference_core.hookimpl
    async def health(self, config, http):
        if self.mode == "health_raises":
            r = await http.get(config.base_url + "/health")
            r.raise_for_status()
        return await openai_compat.probe_health(http, config)

    @inference_core.hookimpl
    async def list_models(self, config, http):
        if self.mode == "secret_in_error":
            try:
                return await openai_compat.list_models(http, config)
            except inference_core.BackendError as exc:
                raise type(exc)(f"{exc.message} (key {config.secret()})") from None
        if self.mode == "closes_http":
            result = await openai_compat.list_models(http, config)
            await http.aclose()
            return result
        return await openai_compat.list_models(http, config)


class SyncHook:
    @inference_core.hookimpl
    def health(self, config, http):
        return None


class Misspelled:
    @inference_core.hookimpl
    async def helth(self, config, http):
        return None

    @inference_core.hookimpl
    async def chat(self, request, config, http=None):
        return None


class Base(BackendConformance):
    supports_embeddings = True

    def mock_chat(self, upstream):
        upstream.post("/v1/chat/completions").respond(json=canned.chat_completion())

    def mock_chat_stream(self, upstream):
        upstream.post("/v1/chat/completions").respond(content=canned.chat_stream())

    def mock_embed(self, upstream):
        upstream.post("/v1/embeddings").mock(side_effect=canned.embeddings_handler)

    def mock_health(self, upstream):
        upstream.get("/health").respond(json={})

    def mock_list_models(self, upstream):
        upstream.get("/v1/models").respond(json=canned.models())
'''


@pytest.mark.parametrize(
    ("plugin_expr", "extra", "failing", "message"),
    [
        ("Leaky('alias')", "", "test_chat", "model alias"),
        ("Leaky('raw_errors')", "", "test_error_mapping[[]500]", "not a taxonomy error"),
        ("Leaky('leak_stream')", "", "test_chat_stream_truncated_raises[[]eof]", "ended silently"),
        ("Leaky('leak_stream')", "", "test_chat_stream_closed_early", "never closed"),
        ("Leaky('reversed')", "", "test_embeddings_order_and_count", "is not the one"),
        ("Leaky('health_raises')", "", "test_health_never_raises[[]503]", "must never raise"),
        ("SyncHook()", "supports_chat = False", "test_hooks_are_known", "async def"),
        ("Misspelled()", "supports_embeddings = False", "test_hooks_are_known", "misspelled"),
        ("Leaky('ok')", "supports_embeddings = False", "test_capability_flags", "flag is false"),
        ("Leaky('secret_in_error')", "", "test_error_mapping[[]503]", "leaks the API key"),
        ("Leaky('closes_http')", "", "test_list_models", "never close it"),
    ],
)
def test_kit_catches_a_broken_plugin(pytester, plugin_expr, extra, failing, message):
    body = f"\n\nclass TestBroken(Base):\n    plugin = {plugin_expr}\n    {extra or 'pass'}\n"
    pytester.makepyfile(test_broken=textwrap.dedent(BROKEN) + body)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-q", "-rf")
    assert result.parseoutcomes()["failed"] >= 1
    result.stdout.fnmatch_lines([f"FAILED*{failing}*"])
    assert message in result.stdout.str()


def test_kit_passes_the_good_plugin_under_pytester(pytester):
    """Same kit, run as a plugin author would: zero failures, zero skips."""
    pytester.makepyfile(
        test_good=textwrap.dedent(BROKEN) + "\n\nclass TestGood(Base):\n    plugin = Leaky('ok')\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("skipped", 0) == 0
    assert outcomes["passed"] >= 20


async def test_inference_upstream_fixture(inference_upstream):
    inference_upstream.routes.get("/v1/models").respond(json=canned.models(["x"]))
    harness = HookHarness(GoodPlugin(), "good")
    async with inference_upstream.client() as http:
        models = await harness.call("list_models", config=make_config("good"), http=http)
    assert [m.id for m in models] == ["x"]
    assert inference_upstream.transport.requests[0].url == "http://upstream.test/v1/models"
    assert not inference_upstream.transport.unclosed()


# ------------------------------------------------------------------- inference_core.testing.local


def test_dead_url_refuses_connections():
    from inference_core.testing import dead_url, unused_port

    assert 0 < unused_port() < 65536
    with pytest.raises(httpx.ConnectError):
        httpx.get(dead_url(), timeout=2.0, trust_env=False)


def test_serve_http_serves_then_stops():
    from http.server import BaseHTTPRequestHandler

    from inference_core.testing import serve_http

    class Hello(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"hi")

    with serve_http(Hello) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/x", timeout=5.0, trust_env=False).text == "hi"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2.0, trust_env=False)


def test_peer_url_skips_locally_and_fails_in_ci(pytester, monkeypatch):
    pytester.makepyfile(
        test_peer=textwrap.dedent(
            """
            from inference_core.testing import peer_url

            def test_needs_peer():
                peer_url("INFERENCE_TEST_NOWHERE_URL", how="scripts/peers/x.sh")
            """
        )
    )
    args = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-rs")
    monkeypatch.delenv("INFERENCE_TEST_NOWHERE_URL", raising=False)
    monkeypatch.delenv("INFERENCE_REQUIRE_PEERS", raising=False)
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*INFERENCE_TEST_NOWHERE_URL is not set*scripts/peers/x.sh*"])
    monkeypatch.setenv("INFERENCE_REQUIRE_PEERS", "1")
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*INFERENCE_REQUIRE_PEERS=1 but INFERENCE_TEST_NOWHERE_URL*"])


def test_peer_url_strips_and_probes(monkeypatch):
    from inference_core.testing import dead_url, peer_url

    monkeypatch.setenv("INFERENCE_TEST_X_URL", " http://127.0.0.1:9/ ")
    assert peer_url("INFERENCE_TEST_X_URL") == "http://127.0.0.1:9"  # no probe: no request
    monkeypatch.setenv("INFERENCE_TEST_X_URL", dead_url())
    with pytest.raises(pytest.fail.Exception, match="does not answer"):
        peer_url("INFERENCE_TEST_X_URL", probe="/health")  # set but dead: a failure, never a skip
