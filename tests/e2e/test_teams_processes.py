"""Scale-out with real processes: gateways started as ``inference serve`` sharing one real
``redis-server``, and one gateway with ``--workers 2``.

* a key's rpm and token budget hold across two gateway processes together;
* a backend whose breaker opened on one gateway is skipped by the other within a second;
* ``--workers 2``: every worker serves, and one ``/metrics`` scrape (whichever worker answers)
  shows the requests of both.

Backends are the protocol-faithful fake OpenAI servers (``tests/fakes``), reached through the
vLLM plugin (an OpenAI-compatible server).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from inference_core.testing.redis_server import redis_url_for_tests
from tests.fakes import FakeOpenAIServer

INFERENCE = Path(sys.executable).parent / "inference"
MSG = [{"role": "user", "content": "hi"}]
MODEL = "gpt-4o-mini"
ADMIN = "admin-e2e-secret"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    yield from redis_url_for_tests()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """``inference serve`` in a subprocess on a free port."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full = {
            **os.environ,
            "INFERENCE_GATEWAY_LOG_LEVEL": "warning",
            "INFERENCE_GATEWAY_ACCESS_LOG": "false",
            "HEALTH_CHECK_INTERVAL": "3600",
            **env,
        }
        full.pop("PROMETHEUS_MULTIPROC_DIR", None)
        args = [str(INFERENCE), "--env-file", "", "serve", "--port", str(self.port)]
        if workers > 1:
            args += ["--workers", str(workers)]
        self.proc = subprocess.Popen(
            args, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("gateway did not start")

    def post(self, key: str | None = None, **kw: object) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        body = {"model": MODEL, "messages": MSG, **kw}
        # a fresh connection each time, so that several workers get a share
        with httpx.Client(timeout=30) as c:
            return c.post(self.url + "/v1/chat/completions", json=body, headers=headers)

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                out, _ = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                out, _ = self.proc.communicate()
            return out or ""
        return self.proc.stdout.read() if self.proc.stdout else ""  # type: ignore[union-attr]


def create_key(env: dict[str, str], name: str, *args: str) -> str:
    out = subprocess.run(
        [str(INFERENCE), "--env-file", "", "keys", "create", name, *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def backend() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=[MODEL]) as srv:
        yield srv


def shared_env(redis_url: str, backend_url: str) -> dict[str, str]:
    return {
        "INFERENCE_PROVIDER": "vllm",
        "INFERENCE_VLLM_BASE_URL": backend_url,
        "INFERENCE_VLLM_MODEL": MODEL,
        "INFERENCE_REDIS_URL": redis_url,
        "INFERENCE_REDIS_PREFIX": f"e2e{uuid.uuid4().hex[:8]}:",
        "INFERENCE_ADMIN_KEYS": ADMIN,
    }


def test_rpm_and_budget_hold_across_two_gateway_processes(redis_url, backend):
    env = shared_env(redis_url, backend.url)
    rpm_key = create_key(env, "team-rpm", "--rpm", "4")
    budget_key = create_key(env, "team-budget", "--budget", "1", "--period", "day")
    one, two = Gateway(env), Gateway(env)
    try:
        codes = [(one if i % 2 else two).post(rpm_key).status_code for i in range(8)]
        assert codes.count(200) == 4, codes
        refused = two.post(rpm_key)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rpm_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1

        assert one.post(budget_key).status_code == 200  # uses the whole budget (> 1 token)
        time.sleep(0.3)  # the usage is written in the background after the answer
        over = two.post(budget_key)
        assert over.status_code == 429, over.text
        assert over.json()["error"]["code"] == "budget_exceeded"

        usage = httpx.get(two.url + "/v1/admin/usage?period=day", headers={"x-api-key": ADMIN})
        keys = usage.json()["keys"]
        assert keys["team-rpm"]["requests"] == 4  # served by both gateways, counted in one place
        assert keys["team-budget"]["requests"] == 1
        assert keys["team-budget"]["completion_tokens"] > 0
    finally:
        out = one.stop() + two.stop()
    assert rpm_key not in out
    assert budget_key not in out


def test_breaker_opened_on_one_gateway_is_skipped_by_the_other(redis_url):
    with FakeOpenAIServer(models=[MODEL]) as bad, FakeOpenAIServer(models=[MODEL]) as good:
        env = {
            "INFERENCE_PROVIDER": "bad",
            # the openai plugin: its health probe (/v1/models) is one the fake serves
            "INFERENCE_BAD_PLUGIN": "openai",
            "INFERENCE_BAD_API_KEY": "sk-fake",
            "INFERENCE_BAD_BASE_URL": bad.base_url,
            "INFERENCE_BAD_MODELS": MODEL,
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "good",
            "INFERENCE_GOOD_PLUGIN": "openai",
            "INFERENCE_GOOD_API_KEY": "sk-fake",
            "INFERENCE_GOOD_BASE_URL": good.base_url,
            "INFERENCE_GOOD_MODELS": MODEL,
            "INFERENCE_MAX_RETRIES": "0",
            "INFERENCE_BREAKER_THRESHOLD": "1",
            "INFERENCE_BREAKER_COOLDOWN": "60",
            "INFERENCE_REDIS_URL": redis_url,
            "INFERENCE_REDIS_PREFIX": f"e2e{uuid.uuid4().hex[:8]}:",
            "INFERENCE_GATEWAY_API_KEYS": "legacy-e2e-key",
        }
        one, two = Gateway(env), Gateway(env)
        try:
            bad.behaviour = "503"

            def chat_hits() -> int:
                return sum(1 for r in bad.requests if r.path == "/v1/chat/completions")

            r = one.post("legacy-e2e-key")
            assert r.status_code == 200
            assert r.headers["x-inference-backend"] == "good"
            assert chat_hits() == 1  # gateway one tried it, and its breaker opened
            time.sleep(1.0)
            r = two.post("legacy-e2e-key")
            assert r.status_code == 200
            assert r.headers["x-inference-backend"] == "good"
            assert chat_hits() == 1  # gateway two never sent it a request
            auth = {"authorization": "Bearer legacy-e2e-key"}
            health = httpx.get(two.url + "/v1/health/inference", headers=auth).json()
            assert health["backends"]["bad"]["breaker"] == "open"
        finally:
            one.stop()
            two.stop()


def _total(metrics: str, status: str = "200") -> float:
    pattern = re.compile(
        r'^inference_gateway_requests_total\{backend="vllm",endpoint="chat",status="'
        + status + r'"\} ([0-9.e+]+)$', re.M,
    )  # fmt: skip
    return sum(float(m) for m in pattern.findall(metrics))


def test_workers_2_one_metrics_for_both(backend):
    gw = Gateway(
        {"INFERENCE_PROVIDER": "vllm", "INFERENCE_VLLM_BASE_URL": backend.url,
         "INFERENCE_VLLM_MODEL": MODEL},
        workers=2,
    )  # fmt: skip
    try:
        prefixes: set[str] = set()
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(10):  # until both workers have served (the kernel picks)
                answers = list(pool.map(lambda _: gw.post(), range(16)))
                sent += len(answers)
                assert all(a.status_code == 200 for a in answers)
                prefixes |= {a.headers["x-request-id"][:8] for a in answers}
                if len(prefixes) >= 2:
                    break
        assert len(prefixes) == 2, "one worker served every request"
        scraped = []
        for _ in range(6):  # several scrapes: whichever worker answers shows the same total
            with httpx.Client() as c:
                scraped.append(_total(c.get(gw.url + "/metrics").text))
        assert scraped == [float(sent)] * 6
    finally:
        gw.stop()
