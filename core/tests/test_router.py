"""Router: fallback rule, retries, deadlines, model aliasing, failures, lifecycle."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import (
    SECRET,
    CompatPlugin,
    FakeTime,
    Server,
    build,
    chat_json,
    config,
    error,
    ok_chat,
    req,
)

from inference_core.errors import (
    AllBackendsFailed,
    BackendUnavailable,
    BadRequest,
    ContextLengthExceeded,
    ModelNotFound,
)
from inference_core.hookspecs import hookimpl
from inference_core.http.transport import StaleConnection
from inference_core.models import (
    BackendConfig,
    ChatResponse,
    EmbeddingResponse,
)
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import RequestTrace

NO_RETRY = RouterPolicy(max_retries=0)


def two(primary: Server, fallback: Server | None = None):
    return {"a.test": primary, "b.test": fallback or Server()}


# ---------------------------------------------------------------------- the fallback rule


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (error(503), "unavailable"),
        (error(502, "<html><body>502 Bad Gateway</body></html>"), "unavailable"),
        (error(500), "unavailable"),
        (error(504), "timeout"),
        (error(429), "rate_limited"),
        (error(401, {"error": "Unauthorized"}), "authentication_failed"),
        (error(403), "authentication_failed"),
        (error(404, {"detail": "Not Found"}), "capability_not_supported"),
        (error(501), "capability_not_supported"),
        (httpx.ConnectError("refused"), "unavailable"),
        (httpx.ReadTimeout("slow"), "timeout"),
    ],
)
async def test_falls_back_on_each_fallback_kind(reply, kind):
    a, b = Server(error(200)), Server(ok_chat("b-model", "from b"))
    a.default = reply
    router = build(two(a, b), policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        resp = await router.chat(req(), trace=trace)
    assert isinstance(resp, ChatResponse)
    assert resp.choices[0].message.content == "from b"
    assert trace.backend == "b"
    assert trace.fallbacks == 1
    assert [x.kind for x in trace.attempts] == [kind]
    assert len(b.requests) == 1


@pytest.mark.parametrize(
    ("reply", "cls", "status"),
    [
        (
            error(400, {"error": {"message": "messages: bad", "type": "invalid_request_error"}}),
            BadRequest,
            400,
        ),
        (error(422, {"detail": [{"loc": ["body", "x"], "msg": "bad"}]}), BadRequest, 422),
        (
            error(404, {"error": {"message": "model x", "type": "NotFoundError"}}),
            ModelNotFound,
            404,
        ),
        (error(404, {"error": "model 'x' not found"}), ModelNotFound, 404),
    ],
)
async def test_never_falls_back_on_a_plain_bad_request(reply, cls, status):
    a, b = Server(reply), Server()
    router = build(two(a, b))
    trace = RequestTrace()
    async with router:
        with pytest.raises(cls) as info:
            await router.chat(req(), trace=trace)
    assert info.value.status == status
    assert not b.requests, "a bad request must not reach the fallback"
    assert len(a.requests) == 1, "a bad request is not retried"
    assert trace.attempts[0].kind == cls.kind


async def test_bad_request_after_a_fallback_is_answered_as_is():
    a = Server(error(503))
    b = Server(error(400, {"error": {"message": "bad temperature", "type": "x"}}))
    router = build(two(a, b), policy=NO_RETRY)
    async with router:
        with pytest.raises(BadRequest, match="bad temperature"):
            await router.chat(req())


async def test_fallback_disabled_chain_of_one_fails_with_all_backends_failed():
    a = Server(error(503))
    router = build({"a.test": a}, policy=NO_RETRY)
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req())
    assert [x.backend for x in info.value.attempts] == ["a"]
    assert info.value.status == 503


async def test_capability_missing_hook_falls_back():
    class EmbedOnly:
        @hookimpl
        async def embed(self, request, config):
            return EmbeddingResponse(data=[{"index": 0, "embedding": [1.0]}], model="e")

    b = Server()
    router = build(
        {"b.test": b},
        configs=[config("a"), config("b")],
        plugins={"a": EmbedOnly(), "b": CompatPlugin()},
    )
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
        emb = await router.embed({"input": "x"})
    assert trace.backend == "b"
    assert trace.attempts[0].kind == "capability_not_supported"
    assert emb.model == "e"


async def test_non_taxonomy_exception_from_a_plugin_falls_back_without_leaking_text():
    class Buggy:
        @hookimpl
        async def chat(self, request):
            raise ValueError(f"oops {SECRET}")

    b = Server()
    router = build(
        {"b.test": b},
        configs=[config("a"), config("b")],
        plugins={"a": Buggy(), "b": CompatPlugin()},
    )
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert trace.attempts[0].kind == "unavailable"
    assert "ValueError" in trace.attempts[0].message
    assert SECRET not in repr(trace)


# ------------------------------------------------------------------------- model aliasing


async def test_each_backend_gets_its_own_model_and_the_request_is_unchanged():
    a, b = Server(error(503)), Server()
    configs = [
        config("a", model="llama3.1:8b", aliases={"gpt-alias": "llama3.1:8b-instruct"}),
        config("b", model="meta-llama/Llama-3.1-8B"),
    ]
    router = build(two(a, b), configs=configs, policy=NO_RETRY)
    request = req("gpt-alias")
    before = request.model_dump()
    trace = RequestTrace()
    async with router:
        await router.chat(request, trace=trace)
    assert a.bodies[0]["model"] == "llama3.1:8b-instruct"
    assert b.bodies[0]["model"] == "meta-llama/Llama-3.1-8B"
    assert request.model_dump() == before
    assert trace.model == "meta-llama/Llama-3.1-8B"


async def test_dict_requests_are_validated_into_bad_requests():
    router = build({"a.test": Server()})
    async with router:
        with pytest.raises(BadRequest, match="messages"):
            await router.chat({"model": "x", "messages": []})
        resp = await router.chat({"messages": [{"role": "user", "content": "x"}]})
    assert resp.usage.total_tokens == 4


# ------------------------------------------------------------------------------- retries


async def test_retries_retryable_errors_with_bounded_full_jitter_backoff():
    ft = FakeTime()
    a = Server().then(error(503), error(503))
    policy = RouterPolicy(max_retries=2, backoff_base=0.5, backoff_max=0.6)
    router = build({"a.test": a}, policy=policy, fake_time=ft, rand=lambda: 1.0)
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert len(a.requests) == 3
    assert trace.retries == 2
    assert trace.backend == "a"
    assert ft.sleeps == [0.5, 0.6]  # base*2^0, then capped at backoff_max


async def test_backoff_is_jittered_between_zero_and_the_ceiling():
    ft = FakeTime()
    a = Server(error(503))
    policy = RouterPolicy(max_retries=3, backoff_base=1.0, backoff_max=8.0)
    values = iter([0.0, 0.5, 0.25])
    router = build({"a.test": a}, policy=policy, fake_time=ft, rand=lambda: next(values))
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req())
    # ceilings 1, 2, 4 times the jitter draws; a zero delay is not slept at all
    assert ft.sleeps == [2.0 * 0.5, 4.0 * 0.25]
    assert len(a.requests) == 4
    assert len(info.value.attempts) == 4


async def test_max_retries_is_per_backend_then_falls_back():
    ft = FakeTime()
    a, b = Server(error(503)), Server(error(503))
    c = Server()
    router = build(
        {"a.test": a, "b.test": b, "c.test": c},
        policy=RouterPolicy(max_retries=1, breaker_threshold=10),
        fake_time=ft,
    )
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert (len(a.requests), len(b.requests), len(c.requests)) == (2, 2, 1)
    assert trace.retries == 2
    assert trace.fallbacks == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ],
)
async def test_retry_after_is_honoured(headers, expected):
    ft = FakeTime()
    a = Server().then(error(429, headers=headers))
    router = build({"a.test": a}, fake_time=ft, rand=lambda: 0.0)
    async with router:
        await router.chat(req())
    assert ft.sleeps == [expected]
    assert len(a.requests) == 2


async def test_retry_after_longer_than_the_cap_falls_back_at_once():
    ft = FakeTime()
    a, b = Server(error(429, headers={"retry-after": "30"})), Server()
    router = build(two(a, b), policy=RouterPolicy(retry_after_cap=10), fake_time=ft)
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert ft.sleeps == []
    assert len(a.requests) == 1
    assert trace.backend == "b"


async def test_retry_after_http_date_is_honoured():
    ft = FakeTime()
    import time
    from email.utils import formatdate

    when = formatdate(time.time() + 3, usegmt=True)
    a = Server().then(error(429, headers={"retry-after": when}))
    router = build({"a.test": a}, fake_time=ft)
    async with router:
        await router.chat(req())
    assert len(ft.sleeps) == 1
    assert 1.0 <= ft.sleeps[0] <= 3.0


async def test_auth_failure_is_not_retried_but_falls_back():
    ft = FakeTime()
    a, b = Server(error(401, {"error": "Unauthorized"})), Server()
    router = build(two(a, b), fake_time=ft)
    async with router:
        await router.chat(req())
    assert len(a.requests) == 1
    assert ft.sleeps == []


async def test_a_wait_that_does_not_fit_the_deadline_falls_back_instead():
    ft = FakeTime()
    a, b = Server(error(429, headers={"retry-after": "5"})), Server()
    policy = RouterPolicy(request_deadline=4.0, first_token_timeout=4.0, retry_after_cap=10)
    router = build(two(a, b), policy=policy, fake_time=ft)
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert ft.sleeps == []
    assert trace.backend == "b"


async def test_stale_pooled_connection_resend_is_not_a_retry_nor_a_failure():
    state = {"n": 0}

    async def flaky(request):
        state["n"] += 1
        if state["n"] == 1:  # what the lean transport raises for a reused, closed connection
            raise StaleConnection("Server disconnected without sending a response.")
        return httpx.Response(200, json=chat_json())

    a = Server(flaky)
    ft = FakeTime()
    router = build({"a.test": a}, policy=RouterPolicy(breaker_threshold=1), fake_time=ft)
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
        health = await router.health()
    assert state["n"] == 2
    assert trace.retries == 0
    assert trace.attempts == []
    assert ft.sleeps == []
    assert health["a"]["breaker"] == "closed"


# ------------------------------------------------------------------------------- deadlines


async def test_one_deadline_bounds_three_slow_backends():
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json=chat_json())

    servers = {f"{n}.test": Server(slow) for n in "abc"}
    policy = RouterPolicy(request_deadline=0.3, first_token_timeout=0.2, max_retries=0)
    router = build(servers, policy=policy)
    loop = asyncio.get_running_loop()
    async with router:
        started = loop.time()
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req())
        elapsed = loop.time() - started
    assert elapsed < 0.6
    kinds = [a.kind for a in info.value.attempts]
    assert kinds[:2] == ["timeout", "timeout"]
    assert "first-token" in info.value.attempts[0].message
    assert "deadline" in info.value.attempts[-1].message
    assert len(info.value.attempts) == 3  # c was cut off by the overall deadline


async def test_first_token_timeout_on_a_non_stream_answer_falls_back():
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json=chat_json())

    a, b = Server(slow), Server()
    router = build(two(a, b), policy=RouterPolicy(first_token_timeout=0.05, max_retries=0))
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert trace.attempts[0].kind == "timeout"
    assert trace.backend == "b"


# ------------------------------------------------------------------- all backends failed


async def test_all_backends_failed_lists_every_attempt_and_no_secret():
    a = Server(error(503, {"error": {"message": f"key {SECRET} is bad", "type": "x"}}))
    b = Server(error(401, {"error": "Unauthorized"}))
    configs = [
        config("a", api_key=SECRET),
        config("b", api_key=SECRET, base_urls=(f"http://user:{SECRET}@b.test",)),
    ]
    router = build(two(a, b), configs=configs, policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req(), trace=trace)
        health = await router.health()
    exc = info.value
    assert [(x.backend, x.kind, x.status) for x in exc.attempts] == [
        ("a", "unavailable", 503),
        ("b", "authentication_failed", 502),
    ]
    for text in (
        str(exc),
        repr(exc),
        repr(exc.attempts),
        str(exc.to_openai()),
        repr(trace),
        repr(exc.last),
        str(health),
    ):
        assert SECRET not in text
    assert "****" in exc.attempts[0].message
    assert a.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was really used


async def test_only_bad_request_failures_raise_the_last_bad_request():
    a = Server(error(400, {"error": {"message": "prompt too long: context length", "type": "x"}}))
    b = Server(error(400, {"error": {"message": "exceed_context_size_error", "type": "x"}}))
    router = build(two(a, b))
    async with router:
        with pytest.raises(ContextLengthExceeded) as info:
            await router.chat(req())
    assert info.value.backend == "b"
    assert info.value.status == 400


async def test_load_errors_are_reported_when_nothing_could_be_tried():
    router = build({}, configs=[config("a")], failed={"a": "ImportError: no module x"})
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req())
        health = await router.health()
    assert info.value.attempts[0].kind == "plugin_load_error"
    assert health["a"]["load_error"] == "ImportError: no module x"
    assert health["a"]["state"] == "down"
    assert not router.ready()


async def test_a_failed_plugin_is_skipped_and_the_rest_serve():
    b = Server()
    router = build({"b.test": b}, configs=[config("a"), config("b")], failed={"a": "boom"})
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert trace.backend == "b"
    assert trace.attempts == []


# ------------------------------------------------------------------ context-length fallback


def ctx_error():
    return error(
        400,
        {
            "error": {
                "code": 400,
                "message": "request exceeds the available context size",
                "type": "exceed_context_size_error",
            }
        },
    )


async def test_context_fallback_goes_to_a_larger_context_backend_only():
    a, b, c, d = Server(ctx_error()), Server(), Server(), Server()
    configs = [
        config("a", options={"context_length": "4096"}),
        config("b", options={"context_length": "2048"}),
        config("c", options={"context_length": "4096"}),
        config("d", options={"context_length": "32768"}),
    ]
    servers = {"a.test": a, "b.test": b, "c.test": c, "d.test": d}
    router = build(servers, configs=configs)
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert trace.backend == "d"
    assert (len(a.requests), len(b.requests), len(c.requests)) == (1, 0, 0)
    assert [x.kind for x in trace.attempts] == ["context_length_exceeded"]


async def test_context_fallback_tries_a_backend_of_unknown_size():
    a, b = Server(ctx_error()), Server()
    configs = [config("a", options={"context_length": "4096"}), config("b")]
    router = build(two(a, b), configs=configs)
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
    assert trace.backend == "b"


async def test_context_fallback_disabled_answers_the_context_error():
    a, b = Server(ctx_error()), Server()
    router = build(two(a, b), policy=RouterPolicy(context_fallback=False))
    async with router:
        with pytest.raises(ContextLengthExceeded):
            await router.chat(req())
    assert not b.requests


async def test_context_error_is_not_retried_on_the_same_backend():
    a = Server(ctx_error())
    router = build({"a.test": a})
    async with router:
        with pytest.raises(ContextLengthExceeded):
            await router.chat(req())
    assert len(a.requests) == 1


# ------------------------------------------------------------------------------ lifecycle


class Lifecycle(CompatPlugin):
    def __init__(self, new_url: str | None = None, fail: bool = False) -> None:
        super().__init__()
        self.new_url = new_url
        self.fail = fail
        self.started = 0
        self.stopped = 0

    @hookimpl
    async def startup(self, config, http):
        self.started += 1
        assert http is not None
        if self.fail:
            raise RuntimeError(f"cannot start {SECRET}")
        if self.new_url:
            return config.model_copy(update={"base_urls": (self.new_url,)})
        return None

    @hookimpl
    async def shutdown(self, config):
        self.stopped += 1


async def test_startup_can_replace_the_config_and_shutdown_runs_on_close():
    managed = Server()
    a = Lifecycle(new_url="http://managed.test")
    router = build({"managed.test": managed}, configs=[config("a", base_urls=())], plugins={"a": a})
    await router.start()
    assert router.http is not None
    await router.chat(req())
    assert managed.requests
    await router.aclose()
    assert (a.started, a.stopped) == (1, 1)
    assert router.http is None


async def test_a_failing_startup_marks_that_backend_failed_and_others_go_on():
    a, b = Lifecycle(fail=True), Lifecycle()
    servers = {"b.test": Server()}
    router = build(servers, configs=[config("a"), config("b")], plugins={"a": a, "b": b})
    trace = RequestTrace()
    async with router:
        await router.chat(req(), trace=trace)
        health = await router.health()
    assert trace.backend == "b"
    assert "startup failed: RuntimeError" in health["a"]["load_error"]
    assert SECRET not in str(health)
    assert health["a"]["state"] == "down"
    assert (a.stopped, b.stopped) == (0, 1)  # shutdown only for what started


async def test_aclose_drains_in_flight_requests_first():
    release = asyncio.Event()

    async def slow(request):
        await release.wait()
        return httpx.Response(200, json=chat_json())

    router = build({"a.test": Server(slow)})
    await router.start()
    task = asyncio.create_task(router.chat(req()))
    await asyncio.sleep(0.01)
    assert router.in_flight == 1
    closing = asyncio.create_task(router.aclose(drain_timeout=5))
    await asyncio.sleep(0.01)
    assert not closing.done(), "aclose must wait for the in-flight request"
    release.set()
    resp = await task
    await closing
    assert resp.id == "chatcmpl-1"
    assert router.in_flight == 0


async def test_aclose_gives_up_draining_after_the_timeout():
    async def never(request):
        await asyncio.sleep(10)

    router = build({"a.test": Server(never)})
    await router.start()
    task = asyncio.create_task(router.chat(req()))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await router.aclose(drain_timeout=0.05)
    assert loop.time() - started < 1
    task.cancel()
    with pytest.raises((asyncio.CancelledError, AllBackendsFailed)):
        await task


async def test_router_starts_lazily_on_first_request():
    router = build({"a.test": Server()})
    resp = await router.chat(req())
    assert resp.model == "m"
    await router.aclose()


# ---------------------------------------------------------------------- models and embeds


async def test_list_models_is_the_union_tagged_by_backend():
    def models(*ids):
        return httpx.Response(200, json={"object": "list", "data": [{"id": i} for i in ids]})

    a, b = Server(), Server()
    a.models, b.models = ["x", "y"], ["y", "z"]
    router = build(two(a, b))
    async with router:
        out = await router.list_models()
    # each model once per backend that serves it (its configured default model included)
    assert [(m.id, m.owned_by) for m in out] == [
        ("x", "a"),
        ("y", "a"),
        ("a-model", "a"),
        ("y", "b"),
        ("z", "b"),
        ("b-model", "b"),
    ]


async def test_embed_falls_back_and_maps_the_model():
    a = Server(error(503))
    b = Server(
        httpx.Response(
            200,
            json={"object": "list", "model": "e", "data": [{"index": 0, "embedding": [0.1, 0.2]}]},
        )
    )
    router = build(two(a, b), policy=NO_RETRY)
    async with router:
        emb = await router.embed({"input": "hello", "model": "a-model"})
    assert emb.data[0].embedding == [0.1, 0.2]
    assert a.bodies[0]["model"] == "a-model"
    assert b.bodies[0]["model"] == "b-model"  # the rest of the chain: its own default


async def test_complete_routes_through_the_same_loop():
    a = Server(error(503))
    b = Server(
        httpx.Response(
            200,
            json={
                "id": "c",
                "object": "text_completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "text": "ok"}],
            },
        )
    )
    router = build(two(a, b), policy=NO_RETRY)
    async with router:
        out = await router.complete({"prompt": "x"})
    assert out.choices[0].text == "ok"


def test_backend_config_for_replica_keeps_the_rest():
    cfg = BackendConfig(name="a", base_urls=("http://x", "http://y"), model="m")
    assert cfg.for_replica("http://y").base_url == "http://y"
    assert cfg.for_replica("http://y").model == "m"


# ------------------------------------------------------------------------- model routing


async def test_backends_that_declare_the_model_are_tried_first():
    a, b, c = Server(), Server(), Server()
    configs = [
        config("a", model="small"),
        config("b", model="big", aliases={"gpt-4o": "big-70b"}),
        config("c", model="other"),
    ]
    router = build({"a.test": a, "b.test": b, "c.test": c}, configs=configs)
    async with router:
        t1, t2, t3 = RequestTrace(), RequestTrace(), RequestTrace()
        await router.chat(req("gpt-4o"), trace=t1)
        await router.chat(req("other"), trace=t2)
        await router.chat(req("default"), trace=t3)
        with pytest.raises(ModelNotFound) as info:
            await router.chat(req("unknown"))
    assert (t1.backend, t1.model) == ("b", "big-70b")
    assert (t2.backend, t2.model) == ("c", "other")
    assert (t3.backend, t3.model) == ("a", "small")  # default: plain chain order
    assert info.value.status == 404  # served nowhere: never another model's answer
    assert not [body for s in (a, b, c) for body in s.bodies if body["model"] == "unknown"]


async def test_a_declaring_backend_that_fails_falls_back_to_the_rest_of_the_chain():
    a, b = Server(), Server(error(503))
    configs = [config("a", model="small"), config("b", model="big")]
    router = build({"a.test": a, "b.test": b}, configs=configs, policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        await router.chat(req("big"), trace=trace)
    assert [x.backend for x in trace.attempts] == ["b"]
    assert (trace.backend, trace.model) == ("a", "small")


async def test_strict_models_rejects_undeclared_models_except_default():
    from test_router_helpers import FakeSettings, plugin_set, transport

    from inference_core.router import Router

    a = Server()
    settings = FakeSettings([config("a", model="small", aliases={"fast": "small-q4"})])
    settings.strict_models = True
    router = Router(settings, plugin_set({"a": CompatPlugin()}), transport=transport({"a.test": a}))
    async with router:
        with pytest.raises(ModelNotFound) as info:
            await router.chat(req("smal"))
        await router.chat(req("fast"))
        await router.chat(req("default"))
    assert info.value.status == 404
    assert "small" in info.value.message  # close names are suggested
    assert not a.bodies[2:]  # nothing else reached the backend
    assert [body["model"] for body in a.bodies] == ["small-q4", "small"]


async def test_a_plugin_that_rewrites_request_model_does_not_leak_it_to_the_fallback():
    class Rude:
        @hookimpl
        async def chat(self, request, config):
            request.model = "rude-internal-name"
            raise BackendUnavailable("down", backend="a")

    b = Server()
    configs = [config("a", models=("*",)), config("b", models=("*",))]
    router = build({"b.test": b}, configs=configs, plugins={"a": Rude(), "b": CompatPlugin()})
    async with router:
        await router.chat(req("gpt-alias"))
    assert b.bodies[0]["model"] == "gpt-alias"


async def test_a_timeout_falls_back_at_once_but_the_last_backend_is_retried():
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json=chat_json())

    a, b = Server(slow), Server(slow)
    policy = RouterPolicy(first_token_timeout=0.05, max_retries=1, backoff_base=0)
    router = build(two(a, b), policy=policy)
    async with router:
        with pytest.raises(AllBackendsFailed) as info:
            await router.chat(req())
    assert [x.backend for x in info.value.attempts] == ["a", "b", "b"]
    assert {x.kind for x in info.value.attempts} == {"timeout"}


async def test_no_backend_with_the_capability_is_a_4xx_not_a_503():
    from inference_core.errors import CapabilityNotSupported

    a = Server(error(404, {"detail": "Not Found"}))
    b = Server(error(501, {"error": {"message": "embeddings are not enabled"}}))
    router = build(two(a, b))
    async with router:
        with pytest.raises(CapabilityNotSupported) as info:
            await router.embed({"input": "x"})
    assert info.value.status == 400
    assert info.value.backend == "b"


async def test_streamed_completions_use_the_same_stream_wrapper():
    body = (
        b'data: {"id":"c","object":"text_completion","created":1,"model":"m",'
        b'"choices":[{"index":0,"text":"ok"}]}\n\n'
        b'data: {"id":"c","object":"text_completion","created":1,"model":"m",'
        b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    a = Server(error(503))
    b = Server(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body))
    router = build(two(a, b), policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        stream = await router.complete({"prompt": "x", "stream": True}, trace=trace)
        parts = [c async for c in stream]
    assert parts[0].choices[0].text == "ok"
    assert trace.usage.total_tokens == 2
    assert trace.backend == "b"


async def test_aclose_waits_for_an_open_stream_and_leaves_no_task_behind():
    from test_router_helpers import ok_stream

    router = build({"a.test": Server(ok_stream(3))}, interval=0.05)
    await router.start()
    stream = await router.chat(req(stream=True))
    closing = asyncio.create_task(router.aclose(drain_timeout=5))
    await asyncio.sleep(0.05)
    assert not closing.done(), "an open stream is in flight"
    chunks = [c async for c in stream]
    await closing
    assert len(chunks) == 4
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not {n for n in names if n.startswith(("health:", "watchdog"))}
