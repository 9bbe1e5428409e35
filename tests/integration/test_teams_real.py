"""Usage accounting and budgets over REAL backends (llama.cpp llama-server, vLLM CPU): the gateway
asks every stream for usage, the client that did not ask never sees the usage chunk, and the
key's tokens are counted (admin endpoint, Prometheus) and stop it at its budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from inference_core.gateway import GatewaySettings, create_app
from inference_core.gateway.keys import FileKeyStore, make_record
from inference_core.router import Router
from inference_core.state import StateSettings

ADMIN = "admin-real-secret"
SECRET = "sk-inf-real-test-key-0123456789"


async def _run(tmp_path: Path, env: dict[str, str]) -> None:
    keys = tmp_path / "keys.toml"
    await FileKeyStore(keys).create(make_record("real", SECRET, budget=40, period="day"))
    router = Router.from_env({**env, "HEALTH_CHECK_INTERVAL": "3600"}, env_file=None)
    app = create_app(
        router,
        GatewaySettings.from_env(env={}),
        state_settings=StateSettings.from_env(
            {"INFERENCE_KEYS_FILE": str(keys), "INFERENCE_ADMIN_KEYS": ADMIN}
        ),
    )
    transport = httpx.ASGITransport(app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url="http://gw", timeout=120
    ) as http:  # fmt: skip
        client = openai.AsyncOpenAI(
            api_key=SECRET, base_url="http://gw/v1", max_retries=0, http_client=http
        )
        models = await client.models.list()
        model = models.data[0].id
        msg: Any = [{"role": "user", "content": "Count from one to ten."}]
        stream = await client.chat.completions.create(
            model=model, messages=msg, max_tokens=24, stream=True
        )
        chunks = [c async for c in stream]
        assert chunks
        assert all(c.usage is None for c in chunks)  # not asked for: not sent
        usage = (
            await http.get("/v1/admin/usage", headers={"authorization": f"Bearer {ADMIN}"})
        ).json()["keys"]["real"]
        assert usage["requests"] == 1
        assert usage["prompt_tokens"] > 0  # asked for upstream by the gateway
        assert 0 < usage["completion_tokens"] <= 24
        # /metrics takes a key when keys are set (INFERENCE_GATEWAY_PROTECT_METRICS, default)
        metrics = (await http.get("/metrics", headers={"authorization": f"Bearer {SECRET}"})).text
        assert "inference_gateway_key_tokens_total{backend=" in metrics
        assert SECRET not in metrics
        # the budget (40 tokens a day) is used up by now or after one more answer
        codes = []
        for _ in range(3):
            try:
                await client.chat.completions.create(model=model, messages=msg, max_tokens=24)
                codes.append(200)
            except openai.RateLimitError as exc:
                codes.append(exc.code)
                break
        assert codes[-1] == "budget_exceeded"


@pytest.mark.llamacpp
async def test_llamacpp_usage_counted_and_budget(tmp_path: Path, llamacpp_url: str) -> None:
    await _run(
        tmp_path, {"INFERENCE_PROVIDER": "llamacpp", "INFERENCE_LLAMACPP_BASE_URL": llamacpp_url}
    )


@pytest.mark.vllm
async def test_vllm_usage_counted_and_budget(tmp_path: Path, vllm_chat_url: str) -> None:
    await _run(tmp_path, {"INFERENCE_PROVIDER": "vllm", "INFERENCE_VLLM_BASE_URL": vllm_chat_url})
