"""Model-aware routing through the real Router: the catalog, the planner's rule, model
fallbacks, refreshes, 404s (scripted OpenAI-compatible servers, no sockets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_router_helpers import (
    CompatPlugin,
    FakeSettings,
    FakeTime,
    Server,
    build,
    chat_json,
    config,
    error,
    ok_chat,
    plugin_set,
    req,
    transport,
)

from inference_core import hookimpl
from inference_core.errors import AllBackendsFailed, ModelNotFound
from inference_core.resilience.policy import RouterPolicy
from inference_core.router import RequestTrace, Router
from inference_core.routing.planner import Miss

NO_RETRY = RouterPolicy(max_retries=0)


def fleet(**servers: Server) -> dict[str, Server]:
    return {f"{name}.test": s for name, s in servers.items()}


def routed(settings: FakeSettings, servers: dict[str, Server], **plugins: Any) -> Router:
    names = [c.name for c in settings.configs]
    found = {n: plugins.get(n) or CompatPlugin() for n in names}
    return Router(settings, plugin_set(found), transport=transport(servers))


# ------------------------------------------------------------------------------- the rule


async def test_a_model_goes_to_the_backend_that_lists_it_not_the_primary():
    a, b = Server(ok_chat("a-m")), Server(ok_chat("qwen"))
    a.models, b.models = ["llama3"], ["qwen2.5:7b"]
    router = build(fleet(a=a, b=b))
    trace = RequestTrace()
    async with router:
        await router.chat(req("qwen2.5:7b"), trace=trace)
    assert (trace.backend, trace.model) == ("b", "qwen2.5:7b")
    assert not a.bodies  # the primary was not asked for a model it does not have
    assert b.bodies[0]["model"] == "qwen2.5:7b"


async def test_an_unknown_model_is_a_404_with_close_names_and_reaches_no_backend():
    a, b = Server(), Server()
    a.models, b.models = ["llama3.1:8b", "llama3.2:1b"], ["gpt-4o-mini"]
    router = build(fleet(a=a, b=b))
    async with router:
        with pytest.raises(ModelNotFound) as info:
            await router.chat(req("llama3.1:7b"))
    assert info.value.status == 404
    assert info.value.param == "model"
    assert "llama3.1:8b" in info.value.message  # a close name is suggested
    assert "gpt-4o-mini" not in info.value.message
    assert not a.bodies
    assert not b.bodies


async def test_backend_slash_model_selects_one_backend_even_when_another_lists_it():
    a, b = Server(), Server()
    a.models = b.models = ["shared"]
    router = build(fleet(a=a, b=b))
    trace = RequestTrace()
    async with router:
        await router.chat(req("b/shared"), trace=trace)
        with pytest.raises(ModelNotFound, match="on backend 'a'"):
            await router.chat(req("a/not-there"))
    assert trace.backend == "b"
    assert b.bodies[0]["model"] == "shared"
    assert not a.bodies


async def test_a_slash_in_a_model_name_selects_nothing_unless_it_names_a_backend():
    a = Server()
    a.models = ["meta-llama/Llama-3.1-8B-Instruct"]
    router = build(fleet(a=a))
    async with router:
        await router.chat(req("meta-llama/Llama-3.1-8B-Instruct"))
    assert a.bodies[0]["model"] == "meta-llama/Llama-3.1-8B-Instruct"


async def test_implicit_latest_forms_reach_the_listed_id():
    a = Server()
    a.models = ["llama3:latest", "qwen2.5:7b"]
    router = build(fleet(a=a))
    async with router:
        await router.chat(req("llama3"))
        await router.chat(req("llama3:latest"))
    assert [b["model"] for b in a.bodies] == ["llama3:latest", "llama3:latest"]


async def test_when_the_serving_backends_fail_the_rest_of_the_chain_answers_with_its_default():
    a, b = Server(error(503)), Server(ok_chat("b-model"))
    a.models = ["big"]
    router = build(fleet(a=a, b=b), policy=NO_RETRY)
    trace = RequestTrace()
    async with router:
        await router.chat(req("big"), trace=trace)
    assert [x.backend for x in trace.attempts] == ["a"]
    assert (trace.backend, trace.model) == ("b", "b-model")
    assert b.bodies[0]["model"] == "b-model"  # never "big": b does not serve it


async def test_strict_models_never_substitutes_another_model():
    a, b = Server(error(503)), Server()
    a.models = ["big"]
    settings = FakeSettings([config("a"), config("b")], NO_RETRY)
    settings.strict_models = True
    router = routed(settings, fleet(a=a, b=b))
    async with router:
        with pytest.raises(AllBackendsFailed):
            await router.chat(req("big"))
    assert not b.bodies


async def test_declared_model_fallbacks_come_before_the_rest_of_the_chain():
    a, b, c = Server(error(503)), Server(ok_chat("small")), Server()
    a.models, b.models, c.models = ["big"], ["small"], ["other"]
    settings = FakeSettings([config("a"), config("c"), config("b")], NO_RETRY)
    settings.model_fallbacks = {"big": ("b/small",)}
    router = routed(settings, fleet(a=a, b=b, c=c))
    trace = RequestTrace()
    async with router:
        await router.chat(req("big"), trace=trace)
    assert (trace.backend, trace.model) == ("b", "small")  # before c, although c is earlier
    assert not c.bodies
    assert b.bodies[0]["model"] == "small"


async def test_model_fallbacks_need_enable_fallback():
    a, b = Server(error(503)), Server()
    a.models, b.models = ["big"], ["small"]
    settings = FakeSettings([config("a"), config("b")], NO_RETRY)
    settings.model_fallbacks = {"big": ("small",)}
    settings.enable_fallback = False
    router = routed(settings, fleet(a=a, b=b))
    async with router:
        assert [(s.backend.name, s.model) for s in router.planner.plan("big")] == [
            ("a", "big"),
            ("b", "b-model"),
        ]


async def test_the_context_length_fallback_walks_the_declared_fallbacks():
    too_long = error(
        400,
        {
            "error": {
                "message": "maximum context length exceeded",
                "code": "context_length_exceeded",
            }
        },
    )
    a, b, c = Server(too_long), Server(), Server(ok_chat("long"))
    a.models, b.models, c.models = ["short"], ["tiny"], ["long"]
    configs = [
        config("a", options={"context_length": "4096"}),
        config("b", options={"context_length": "2048"}),
        config("c", options={"context_length": "32768"}),
    ]
    settings = FakeSettings(configs, NO_RETRY)
    settings.model_fallbacks = {"short": ("b/tiny", "c/long")}
    router = routed(settings, fleet(a=a, b=b, c=c))
    trace = RequestTrace()
    async with router:
        await router.chat(req("short"), trace=trace)
    assert (trace.backend, trace.model) == ("c", "long")
    assert not b.bodies  # its context is not larger: skipped


async def test_a_wildcard_backend_takes_names_nobody_lists():
    a, b = Server(), Server()
    a.models = ["llama3"]
    configs = [config("a"), config("b", models=("*",))]
    router = routed(FakeSettings(configs), fleet(a=a, b=b))
    trace = RequestTrace()
    async with router:
        await router.chat(req("anything-at-all"), trace=trace)
        await router.chat(req("llama3"))
    assert trace.backend == "b"
    assert b.bodies[0]["model"] == "anything-at-all"
    assert a.bodies[0]["model"] == "llama3"


async def test_a_backend_that_cannot_list_may_serve_any_name_after_the_listed_ones():
    class NoList:
        @hookimpl
        async def chat(self, request, config):
            from inference_core.models import ChatResponse

            return ChatResponse.model_validate(chat_json(request.model))

    a = Server()
    a.models = ["listed"]
    settings = FakeSettings([config("a"), config("n", base_urls=())])
    router = routed(settings, fleet(a=a), n=NoList())
    trace = RequestTrace()
    async with router:
        assert [s.backend.name for s in router.planner.plan("listed")] == ["a", "n"]
        await router.chat(req("whatever"), trace=trace)
    assert (trace.backend, trace.model) == ("n", "whatever")


async def test_declared_models_add_to_the_listing():
    a = Server()
    a.models = ["listed"]
    router = routed(FakeSettings([config("a", models=("hidden",))]), fleet(a=a))
    async with router:
        await router.chat(req("hidden"))
        ids = [m.id for m in await router.list_models()]
    assert a.bodies[0]["model"] == "hidden"
    assert ids == ["listed", "hidden", "a-model"]


async def test_default_reports_the_model_that_answered():
    a = Server(ok_chat("served-name"))
    router = routed(FakeSettings([config("a", model=None)]), fleet(a=a))
    trace = RequestTrace()
    async with router:
        await router.chat(req("default"), trace=trace)
    assert a.bodies[0]["model"] == "default"
    assert trace.model == "served-name"


async def test_the_request_object_keeps_the_clients_model():
    a = Server()
    router = routed(FakeSettings([config("a", aliases={"fast": "a-small"})]), fleet(a=a))
    request = req("fast")
    async with router:
        await router.chat(request)
    assert a.bodies[0]["model"] == "a-small"
    assert request.model == "fast"


# ----------------------------------------------------------------------------- refreshing


async def test_a_model_pulled_after_start_is_routable_without_a_restart():
    ft = FakeTime()
    a = Server()
    a.models = ["llama3"]
    router = build(fleet(a=a), fake_time=ft)
    async with router:
        calls = a.models_calls
        with pytest.raises(ModelNotFound):
            await router.chat(req("qwen"))
        assert a.models_calls == calls + 1  # the miss refreshed the catalog once
        a.models.append("qwen")
        with pytest.raises(ModelNotFound):  # within the refresh gap: no new listing
            await router.chat(req("qwen"))
        assert a.models_calls == calls + 1
        ft.now += 11
        await router.chat(req("qwen"))
    assert a.bodies[-1]["model"] == "qwen"


async def test_a_backend_404_for_a_listed_model_refreshes_its_catalog():
    a = Server(
        error(404, {"error": {"message": "model 'gone' not found", "code": "model_not_found"}})
    )
    a.models = ["gone"]
    router = build(fleet(a=a))
    async with router:
        before = a.models_calls
        with pytest.raises(ModelNotFound):
            await router.chat(req("gone"))
        for task in [e.task for e in router.catalog._models.values() if e.task]:
            await task
    assert a.models_calls == before + 1


async def test_a_listing_that_answers_404_says_the_base_url_looks_wrong():
    a = Server()

    async def not_found(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(404, text="File Not Found")
        return await Server.handle(a, request)

    router = Router(
        FakeSettings([config("a")]),
        plugin_set({"a": CompatPlugin()}),
        transport=httpx.MockTransport(not_found),
    )
    async with router:
        health = await router.health()
    assert "base URL looks wrong" in health["a"]["models_error"]
    assert "INFERENCE_A_BASE_URL" in health["a"]["models_error"]
    assert health["a"]["accepts_any_model"] is True


async def test_the_seed_health_shape_sits_beside_the_full_report():
    from inference_core.router import seed_health

    a, b = Server(), Server()
    a.models = ["x"]
    router = build(fleet(a=a, b=b))
    async with router:
        report = await router.health(refresh=True)
    seed = seed_health(report)
    assert seed["primary"] == {"type": "a", "healthy": True, "models": ["x", "a-model"]}
    assert [f["type"] for f in seed["fallbacks"]] == ["b"]


def test_plan_misses_are_not_cached_and_hits_are():
    a = Server()
    a.models = ["x"]
    router = build(fleet(a=a))

    async def run() -> None:
        async with router:
            assert isinstance(router.planner.plan("y"), Miss)
            assert "y" not in router.planner._cache
            first = router.planner.plan("x")
            assert router.planner.plan("x") is first

    import asyncio

    asyncio.run(run())


async def test_the_upstream_body_carries_the_resolved_name_for_streams_too():
    from test_router_helpers import ok_stream

    a = Server(ok_stream(2, model="real"))
    router = routed(FakeSettings([config("a", aliases={"nick": "real"})]), fleet(a=a))
    trace = RequestTrace()
    async with router:
        stream = await router.chat(req("nick", stream=True), trace=trace)
        chunks = [c async for c in stream]
    assert json.loads(a.requests[0].content)["model"] == "real"
    assert trace.model == "real"
    assert chunks


async def test_find_model_by_id_alias_implicit_form_and_backend_slash_model():
    a, b = Server(), Server()
    a.models, b.models = ["llama3:latest"], ["llama3:latest", "qwen"]
    configs = [config("a", aliases={"fast": "llama3:latest"}), config("b")]
    router = routed(FakeSettings(configs), fleet(a=a, b=b))
    async with router:
        both = await router.find_model("llama3")
        only_b = await router.find_model("b/llama3")
        alias = await router.find_model("fast")
        none = await router.find_model("a/qwen")
    assert [(m.backend, m.id) for m in both] == [("a", "llama3:latest"), ("b", "llama3:latest")]
    assert [(m.backend, m.id) for m in only_b] == [("b", "llama3:latest")]
    assert [(m.backend, m.id) for m in alias] == [("a", "llama3:latest")]
    assert none == []


async def test_an_alias_routes_before_another_backends_listing():
    a, b = Server(), Server()
    a.models = b.models = ["mock-chat", "mock-stream"]  # both list both (as the bench mock does)
    configs = [config("a"), config("b", aliases={"mock-stream": "mock-stream"})]
    router = routed(FakeSettings(configs), fleet(a=a, b=b))
    async with router:
        plan = router.planner.plan("mock-stream")
    assert [s.backend.name for s in plan] == ["b", "a"]
