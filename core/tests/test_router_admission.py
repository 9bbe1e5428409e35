"""Admission control per backend replica, through the router and the gateway (issue #11):
a concurrency cap, a bounded queue with a maximum wait, spill-over to the next backend serving
the model, else 429 with Retry-After, never a hang; queue depth in health and /metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from inference_core.gateway import GatewaySettings, create_app
from inference_core.router import Router

MSG = {"messages": [{"role": "user", "content": "hi"}]}


def chat_json(model: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class Upstream:
    """Fake OpenAI-compatible servers by host: each answers after ``delay`` seconds and
    records how many requests it was handling at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.served: dict[str, int] = {}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        if not request.url.path.endswith("/chat/completions"):  # health probes
            return httpx.Response(200, json={})
        self.now[host] = self.now.get(host, 0) + 1
        self.peak[host] = max(self.peak.get(host, 0), self.now[host])
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.now[host] -= 1
        self.served[host] = self.served.get(host, 0) + 1
        return httpx.Response(200, json=chat_json("m"))


def gateway(env: dict[str, str], upstream: Upstream) -> tuple[Router, Any]:
    base = {"HEALTH_CHECK_INTERVAL": "3600", "INFERENCE_MAX_RETRIES": "0"}
    router = Router.from_env(
        {**base, **env}, env_file=None, transport=httpx.MockTransport(upstream)
    )
    return router, create_app(router, GatewaySettings.from_env(env={}), manage_router=False)


async def test_overload_of_ten_times_the_slots_is_200_or_429_none_hanging() -> None:
    upstream = Upstream(delay=0.2)
    router, app = gateway(
        {
            "INFERENCE_PROVIDER": "vllm",
            "INFERENCE_VLLM_BASE_URL": "http://slots.test",
            "INFERENCE_VLLM_MAX_CONCURRENCY": "4",
            "INFERENCE_VLLM_MAX_QUEUE": "8",
            "INFERENCE_VLLM_QUEUE_TIMEOUT": "5",
        },
        upstream,
    )
    async with (
        router,
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c,
    ):
        t0 = time.monotonic()
        responses = await asyncio.wait_for(
            asyncio.gather(*(c.post("/v1/chat/completions", json=MSG) for _ in range(40))), 10
        )
        took = time.monotonic() - t0
        health = (await c.get("/v1/health/inference")).json()
        metrics = (await c.get("/metrics")).text
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) == 12  # 4 slots + 8 queued, in three waves of 0.2 s
    assert upstream.peak["slots.test"] == 4  # the backend never saw more than its slots
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["attempts"][0]["kind"] == "rate_limited"
            assert "at capacity" in r.json()["error"]["attempts"][0]["message"]
    assert took < 3
    snap = health["backends"]["vllm"]["replicas"][0]["admission"]
    assert snap["limit"] == 4
    assert snap["in_flight"] == 0
    assert snap["queued"] == 0
    assert snap["rejected_full"] == 28
    assert snap["waited"] == 8
    assert 'inference_gateway_admission_rejected_full{backend="vllm",replica="0"} 28.0' in metrics
    assert 'inference_gateway_admission_limit{backend="vllm",replica="0"} 4.0' in metrics


async def test_a_full_backend_spills_to_the_next_one_serving_the_model() -> None:
    upstream = Upstream(delay=0.2)
    router, app = gateway(
        {
            "INFERENCE_PROVIDER": "local",
            "INFERENCE_LOCAL_PLUGIN": "vllm",
            "INFERENCE_LOCAL_BASE_URL": "http://local.test",
            "INFERENCE_LOCAL_MAX_CONCURRENCY": "2",
            "INFERENCE_LOCAL_MAX_QUEUE": "0",
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "big",
            "INFERENCE_BIG_PLUGIN": "vllm",
            "INFERENCE_BIG_BASE_URL": "http://big.test",
        },
        upstream,
    )
    async with (
        router,
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c,
    ):
        responses = await asyncio.wait_for(
            asyncio.gather(*(c.post("/v1/chat/completions", json=MSG) for _ in range(6))), 10
        )
    assert [r.status_code for r in responses] == [200] * 6
    backends = sorted(r.headers["x-inference-backend"] for r in responses)
    assert backends == ["big"] * 4 + ["local"] * 2
    assert upstream.peak["local.test"] == 2


async def test_a_queued_request_is_served_when_a_slot_frees() -> None:
    upstream = Upstream(delay=0.1)
    router, _ = gateway(
        {
            "INFERENCE_PROVIDER": "vllm",
            "INFERENCE_VLLM_BASE_URL": "http://one.test",
            "INFERENCE_VLLM_MAX_CONCURRENCY": "1",
            "INFERENCE_VLLM_QUEUE_TIMEOUT": "2",
        },
        upstream,
    )
    async with router:
        results = await asyncio.gather(*(router.chat(dict(MSG)) for _ in range(3)))
    assert len(results) == 3  # one at a time, the two others waited their turn (queue: 2)
    assert upstream.peak["one.test"] == 1


async def test_a_queue_wait_leaves_the_fallback_its_time() -> None:
    """With a later backend in the plan, waiting in a queue never eats the time the fallback
    needs: the wait is cut to the deadline less the first-token timeout."""
    upstream = Upstream(delay=1.5)
    router, _ = gateway(
        {
            "INFERENCE_PROVIDER": "local",
            "INFERENCE_LOCAL_PLUGIN": "vllm",
            "INFERENCE_LOCAL_BASE_URL": "http://local.test",
            "INFERENCE_LOCAL_MAX_CONCURRENCY": "1",
            "INFERENCE_LOCAL_QUEUE_TIMEOUT": "30",
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "big",
            "INFERENCE_BIG_PLUGIN": "vllm",
            "INFERENCE_BIG_BASE_URL": "http://big.test",
            "INFERENCE_REQUEST_DEADLINE": "3",
            "INFERENCE_FIRST_TOKEN_TIMEOUT": "2",
        },
        upstream,
    )
    from inference_core.router import RequestTrace

    async with router:
        traces = [RequestTrace(), RequestTrace()]
        t0 = time.monotonic()
        await asyncio.gather(*(router.chat(dict(MSG), trace=t) for t in traces))
        took = time.monotonic() - t0
    assert sorted(t.backend for t in traces) == ["big", "local"]
    assert took < 2.9  # the second waited ~1 s (3 - 2) in the queue, then the fallback answered
