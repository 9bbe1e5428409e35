"""The conformance kit passes a well-behaved plugin and fails broken ones, for the right reason."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import httpx
import pytest

import inference_core
from inference_core.http import openai_compat
from inference_core.testing import (
    FAILURES,
    BackendConformance,
    HookHarness,
    TrackingTransport,
    canned,
    failing_handler,
    make_config,
)
from inference_core.testing.wire import OpenAIWire, float32_base64

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


async def test_tracking_transport_records_refused_requests_and_bodies():
    transport = TrackingTransport(httpx.MockTransport(failing_handler("connect")))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("http://x/v1/chat/completions", json={"model": "m"})
    (record,) = transport.responses
    assert (record.status, record.method, record.path) == (0, "POST", "/v1/chat/completions")
    assert record.body == {"model": "m"}
    assert record.headers["content-type"] == "application/json"
    assert not transport.unclosed()
    assert transport.since(transport.mark()) == []


def test_every_failure_has_an_answer_and_unknown_ones_are_refused():
    for failure in FAILURES:
        handler = failing_handler(failure)
        request = httpx.Request("GET", "http://x/")
        if failure in ("connect", "timeout"):
            with pytest.raises(httpx.TransportError):
                handler(request)
        else:
            assert handler(request).status_code in range(200, 600)
    with pytest.raises(ValueError, match="known: connect"):
        failing_handler("418")


def test_openai_wire_answers_as_a_server_would():
    wire = OpenAIWire()

    def post(path, body):
        return httpx.Request("POST", "http://x" + path, json=body)

    plain = wire.answer(post("/v1/chat/completions", {"stream": True}), "chat_stream").content
    asked = {"stream": True, "stream_options": {"include_usage": True}}
    usage = wire.answer(post("/chat/completions", asked), "chat_stream").content
    assert b'"choices": []' not in plain
    assert b'"choices": []' in usage
    error = wire.answer(post("/v1/chat/completions", {"stream": True}), "stream_error").content
    assert error.index(b'"content": "Hel"') < error.index(b'"error"') < error.index(b"[DONE]")
    body = {"input": ["a", "b"], "encoding_format": "base64", "dimensions": 4}
    data = wire.answer(post("/v1/embeddings", body), "embed").json()["data"]
    assert [item["index"] for item in data] == [1, 0]
    assert data[1]["embedding"] == float32_base64(canned.embedding_for("a", dims=4))
    assert wire.answer(httpx.Request("GET", "http://x/v1/models"), "chat") is None
    assert wire.fields(post("/v1/embeddings", body)) == body
    assert wire.fields(httpx.Request("GET", "http://x/health")) is None


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

PLUGINS = Path(__file__).with_name("conformance_plugins.py")
RUN = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-q", "-rf")

#: (plugin, base class, class body, the check that must fail (a -k expression), message)
BROKEN: list[tuple[str, str, str, str, str]] = [
    # shape
    ("SyncHook()", "Base", "supports_chat = False", "test_hooks_are_known", "async def"),
    ("Misspelled()", "Base", "supports_chat = False", "test_hooks_are_known", "misspelled"),
    ("Compat()", "Base", "supports_embeddings = False", "test_capability_flags", "flag is false"),
    ("Compat('chat_dict')", "Base", "", "test_chat", "must return a ChatResponse"),
    ("Compat('complete_empty')", "Base", "", "test_complete", "has no choice"),
    ("Compat('models_empty')", "Base", "", "test_list_models", "returned no model"),
    # streams
    ("Compat('stream_list')", "Base", "", "test_chat_stream", "async iterator"),
    ("Compat('leak_stream')", "Base", "", "test_chat_stream_closed_early", "never closed"),
    ("Compat('leak_stream')", "Base", "", "test_chat_stream_truncated_raises and eof", "silently"),
    ("Raw('no_end_check')", "RawBase", "", "test_chat_stream_truncated_raises", "silently"),
    # 1. usage and request fields
    ("Raw('drop_usage')", "RawBase", "", "test_stream_usage_chunk_when_asked", "usage chunk"),
    ("Raw('drop_fields')", "RawBase", "", "test_request_fields_forwarded", "tool_choice=None"),
    ("Compat('drop_extras')", "Base", "", "test_request_fields_forwarded", "top_k=None"),
    ("Raw('drop_fields')", "RawBase", "", "test_stream_usage_chunk_when_asked", "usage chunk"),
    # 2. in-band stream errors
    ("Raw('skip_error_events')", "RawBase", "", "test_stream_in_band_error", "in-band error"),
    # 3. refusals after the first chunk
    (
        "Raw('yield_first')",
        "RawBase",
        "",
        "test_stream_refusal_before_first_chunk and 429",
        "1 chunk",
    ),
    (
        "Raw('yield_first')",
        "RawBase",
        "",
        "test_stream_refusal_before_first_chunk and connect",
        "1 chunk",
    ),
    # 4. statuses
    ("Compat('raw_errors')", "Base", "", "test_error_mapping and 500", "not a taxonomy error"),
    ("Raw('403_bad_request')", "RawBase", "", "test_error_mapping and 403", "expected Authentica"),
    (
        "Raw('context_bad_request')",
        "RawBase",
        "",
        "test_error_mapping and context",
        "expected ContextL",
    ),
    ("Raw('502_bad_request')", "RawBase", "", "test_error_mapping and 502", "expected BackendUna"),
    (
        "Raw('retry_after_seconds_only')",
        "RawBase",
        "",
        "test_error_mapping and 429-date",
        "retry_after=None",
    ),
    (
        "Raw('retry_after_seconds_only')",
        "RawBase",
        "",
        "test_error_mapping and 429-ms",
        "retry_after=None",
    ),
    ("Raw('crash_on_garbage')", "RawBase", "", "test_error_mapping and 200-html", "not a taxonomy"),
    ("Compat('health_raises')", "Base", "", "test_health_never_raises and 503", "must never raise"),
    # 5. retries inside the plugin
    ("Raw('retries')", "RawBase", "", "test_no_retry_inside_the_plugin and 503", "3 times"),
    ("Raw('retries')", "RawBase", "", "test_no_retry_inside_the_plugin and connect", "3 times"),
    # 6. aliases
    ("Compat('no_alias')", "Base", "", "test_model_alias_on_the_wire", "'conformance-alias'"),
    ("Compat('hardcoded_model')", "Base", "", "test_model_alias_on_the_wire", "'aliased-upstr"),
    ("Compat('old_override')", "Base", "", "test_model_alias_on_the_wire", "'concrete-upstream"),
    # 7. embeddings
    ("Compat('reversed')", "Base", "", "test_embeddings_order_and_count", "input order"),
    ("Raw('ignore_index')", "RawBase", "", "test_embeddings_placed_by_index", "is not the one"),
    ("Raw('dedupe')", "RawBase", "", "test_embeddings_placed_by_index", "4 inputs gave 3"),
    ("Compat('drop_embed_fields')", "Base", "", "test_embeddings_fields_forwarded", "dimensions"),
    # 8. secrets and the shared client
    ("Compat('logs_key')", "Base", "", "test_no_secret_in", "a log record leaks"),
    (
        "Compat('logs_token')",
        "Base",
        "options = {'admin_token': 'tok-conformance-0123456789'}",
        "test_no_secret_in",
        "a log record leaks",
    ),
    ("Compat('secret_in_error')", "Base", "", "test_no_secret_in", "error leaks"),
    ("Compat('secret_in_error')", "Base", "", "test_error_mapping and 503", "leaks a secret"),
    ("Compat('health_leaks_key')", "Base", "", "test_health_ready", "leaks a secret"),
    ("Compat('closes_http')", "Base", "", "test_shared_client_left_open", "never close it"),
    # native protocols (optional capability)
    ("Compat('native_claims')", "Base", "", "test_native_protocols_declared", "kit was told"),
    (
        "Compat('native_claims')",
        "Base",
        "native_protocols = ('anthropic.messages',)\n"
        "    def mock_native(self, upstream, protocol, stream):\n"
        "        upstream.post('/v1/messages').respond(json={})",
        "test_native_protocol_answers_keep_the_protocol and anthropic and json",
        "a native answer",
    ),
]

#: correct plugins of different designs, with the class body each needs
CORRECT = [
    ("Compat()", "Base", "", "core's openai_compat (SSE decoder, error mapping)"),
    ("Raw()", "RawBase", "", "raw httpx, own SSE parser and status table, lazy request"),
    ("Raw()", "RawBase", "api_key = None", "raw httpx, a keyless server"),
]


def _run_kit(pytester, plugin: str, base: str, body: str, *args: str):
    source = PLUGINS.read_text()
    test = f"\n\nclass TestPlugin({base}):\n    plugin = {plugin}\n    {body or 'pass'}\n"
    pytester.makepyfile(test_plugin=source + test)
    return pytester.runpytest_inprocess(*RUN, *args)


@pytest.mark.parametrize(
    ("plugin", "base", "body", "check", "message"),
    BROKEN,
    ids=[f"{p}-{c}" for p, _, _, c, _ in BROKEN],
)
def test_kit_catches_a_broken_plugin(pytester, plugin, base, body, check, message):
    """Each seeded bug fails the check of its rule, with a message that names the problem."""
    result = _run_kit(pytester, plugin, base, body, "-k", check)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    name = check.split(" and ")[0]
    result.stdout.fnmatch_lines([f"FAILED*{name}*"])
    assert message in result.stdout.str(), result.stdout.str()


def test_every_check_has_a_broken_plugin():
    """The parametrised cases above cover every check of the kit (a new check needs one)."""
    checks = {n for n in dir(BackendConformance) if n.startswith("test_")}
    covered = {c for c in checks for _, _, _, k, _ in BROKEN if c.startswith(k.split(" and ")[0])}
    assert checks - covered == set()


@pytest.mark.parametrize(("plugin", "base", "body", "design"), CORRECT, ids=[c[3] for c in CORRECT])
def test_kit_passes_correct_plugins(pytester, plugin, base, body, design):
    """Correct designs pass every check: zero failures, zero skips, and fast."""
    started = time.perf_counter()
    result = _run_kit(pytester, plugin, base, body)
    took = time.perf_counter() - started
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("skipped", 0) == 0
    assert outcomes["passed"] >= 90
    assert took < 10, f"the whole conformance run took {took:.1f} s"


async def test_the_kit_hands_over_the_client_as_the_router_does():
    """What the shared-client check guards against happens in production: a hook that enters
    the client the router gave it closes the router's client, for every backend."""

    class Closer:
        @inference_core.hookimpl
        async def chat(self, request, config, http):
            async with http:  # works on the router's client (never entered), then closes it
                return await openai_compat.chat(http, config, request)

        @inference_core.hookimpl
        async def health(self, config, http):
            return inference_core.Health(state="ready")

    env = {
        "INFERENCE_PROVIDER": "closer",
        "INFERENCE_CLOSER_BASE_URL": "http://upstream.test",
        "INFERENCE_CLOSER_MODEL": "m",
    }
    answer = httpx.MockTransport(lambda r: httpx.Response(200, json=canned.chat_completion()))
    router = inference_core.Router.from_env(
        env, env_file=None, transport=answer, extra_plugins={"closer": Closer()}
    )
    async with router:
        assert router.http is not None
        assert not router.http.is_closed
        await router.chat({"messages": [{"role": "user", "content": "hi"}]})
        assert router.http.is_closed  # every backend's next request fails


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
