"""Clients see backend names and error kinds, never addresses (issue #11, item 8); the logs keep
the detail; ``mask_url`` hides secrets in query strings.

A real router (the vllm plugin) against loopback ports nothing listens on, through the gateway
app: the 503's ``attempts`` and ``/v1/health/inference`` name the backend and the error kind,
not ``127.0.0.1:<port>``; the gateway's own log line has the address.
"""

from __future__ import annotations

import logging
import socket

import httpx

from inference_core.gateway import GatewaySettings, create_app
from inference_core.gateway.security import HIDDEN_ADDRESS, Redactor
from inference_core.router import Router
from inference_core.settings import mask_url, redact_backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_attempts_and_health_name_backends_not_addresses(caplog) -> None:
    ports = [free_port(), free_port()]
    env = {
        "INFERENCE_PROVIDER": "vllm",
        "INFERENCE_VLLM_BASE_URL": ",".join(f"http://127.0.0.1:{p}" for p in ports),
        "INFERENCE_VLLM_MODEL": "m",
        "INFERENCE_MAX_RETRIES": "0",
        "HEALTH_CHECK_INTERVAL": "3600",
    }
    router = Router.from_env(env, env_file=None)
    app = create_app(router, GatewaySettings.from_env(env={}))
    caplog.set_level(logging.DEBUG)
    async with (
        router,
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c,
    ):
        r = await c.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        health = await c.get("/v1/health/inference", params={"refresh": "true"})
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["attempts"]
    for attempt in error["attempts"]:
        assert attempt["backend"] == "vllm"
        assert attempt["kind"] == "unavailable"
    for text in (r.text, health.text):
        for port in ports:
            assert str(port) not in text, text
        assert "127.0.0.1" not in text
    assert HIDDEN_ADDRESS in r.text  # said where the address was, not silently dropped
    replicas = health.json()["backends"]["vllm"]["replicas"]
    assert [x["replica"] for x in replicas] == ["vllm#0", "vllm#1"]
    assert all(x["url"] is None for x in replicas)
    # the operator's log keeps the detail
    logged = " ".join(f"{rec.getMessage()} {getattr(rec, 'fields', '')}" for rec in caplog.records)
    assert f"127.0.0.1:{ports[0]}" in logged or f"127.0.0.1:{ports[1]}" in logged


def test_the_public_redactor_hides_urls_ips_and_configured_host_ports() -> None:
    public = Redactor({"sk-secret-value-123456"}, {"vllm:8000", "llm.internal:8443"})
    text = public(
        "backend vllm: cannot connect (vllm:8000); http://llm.internal:8443/v1 said 500; "
        "10.1.2.3:11434 down; [fd00::1]:8080 refused; key sk-secret-value-123456"
    )
    assert "vllm:8000" not in text
    assert "llm.internal" not in text
    assert "10.1.2.3" not in text
    assert "fd00::1" not in text
    assert "sk-secret" not in text
    assert "vllm" in text  # the backend's name stays (not an address)
    logs = Redactor({"sk-secret-value-123456"})  # the secrets-only one keeps addresses
    assert "vllm:8000" in logs("cannot connect (vllm:8000)")


def test_mask_url_hides_query_secrets_and_userinfo() -> None:
    assert mask_url("http://h:1/v1") == "http://h:1/v1"
    masked = mask_url("https://user:pw@api.example/v1?key=abc123&api-version=2024&token=t0k")
    assert "abc123" not in masked
    assert "t0k" not in masked
    assert "pw" not in masked
    assert masked == "https://****@api.example/v1?key=****&api-version=****&token=****"
    from inference_core.models import BackendConfig

    cfg = BackendConfig(name="x", base_urls=("https://api.example/v1?key=abc123",))
    assert "abc123" not in repr(redact_backend(cfg))
