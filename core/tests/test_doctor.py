"""`inference doctor`: chain checks through the plugins' health hooks, table, exit codes."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from rich.console import Console

from inference_core import hookimpl
from inference_core.models import BackendConfig, Health, ModelInfo
from inference_core.ops import doctor


class FakeBackend:
    """A backend plugin whose health depends on the replica URL it is asked about."""

    def __init__(
        self,
        states: dict[str, str] | str = "ready",
        models: list[str] | None = None,
        detail: str | None = None,
        listed: list[str] | None = None,
    ) -> None:
        self.states = states
        self.models = models or []
        self.detail = detail
        self.listed = listed
        self.probed: list[str] = []

    @hookimpl
    async def health(self, config: BackendConfig, http: httpx.AsyncClient) -> Health:
        url = config.base_urls[0] if config.base_urls else ""
        self.probed.append(url)
        state = self.states if isinstance(self.states, str) else self.states.get(url, "down")
        return Health(state=state, detail=self.detail, latency_ms=12.0, models=self.models)

    @hookimpl
    async def list_models(self, config: BackendConfig, http: httpx.AsyncClient):
        if self.listed is None:
            return None
        return [ModelInfo(id=m) for m in self.listed]


def run(env: dict[str, str], plugins: dict[str, object], **kw) -> tuple[int, str]:
    buf = io.StringIO()
    code = doctor.doctor_command(
        env=env, env_file=None, extra_plugins=plugins, console=Console(file=buf, width=220), **kw
    )
    return code, buf.getvalue()


HYBRID = {
    "INFERENCE_PROVIDER": "ollama",
    "INFERENCE_OLLAMA_BASE_URL": "http://ollama:11434",
    "INFERENCE_OLLAMA_MODEL": "llama3.1:8b",
    "ENABLE_FALLBACK": "true",
    "FALLBACK_CHAIN": "openai",
    "OPENAI_API_KEY": "sk-test-000000000000",
    "INFERENCE_OPENAI_MODEL": "gpt-4o-mini",
}


def test_all_usable_exit_zero_and_table() -> None:
    ollama = FakeBackend(models=["llama3.1:8b", "nomic-embed-text:latest"])
    openai = FakeBackend(listed=["gpt-4o-mini", "gpt-4o"])
    code, out = run(HYBRID, {"ollama": ollama, "openai": openai})
    assert code == 0, out
    assert "primary ollama is usable" in out
    assert "http://ollama:11434" in out
    assert ollama.probed == ["http://ollama:11434"]
    assert "sk-test" not in out  # no secret in the output


def test_model_not_pulled_makes_primary_unusable_and_suggests_pull() -> None:
    ollama = FakeBackend(models=["mistral:7b"])
    code, out = run(HYBRID, {"ollama": ollama, "openai": FakeBackend(listed=["gpt-4o-mini"])})
    assert code == 1
    assert "llama3.1:8b" in out
    assert "is not on the backend" in out
    assert "inference pull llama3.1:8b --backend ollama" in out
    assert "requests fall back to: openai" in out


def test_ollama_latest_tag_counts_as_the_model() -> None:
    env = {**HYBRID, "INFERENCE_OLLAMA_MODEL": "llama3.1"}
    code, out = run(env, {"ollama": FakeBackend(models=["llama3.1:latest"]),
                          "openai": FakeBackend()})  # fmt: skip
    assert code == 0, out


def test_primary_down_exits_one_and_names_the_fallback() -> None:
    ollama = FakeBackend("down", detail="connection refused")
    code, out = run(HYBRID, {"ollama": ollama, "openai": FakeBackend(listed=["gpt-4o-mini"])})
    assert code == 1
    assert "primary ollama is not usable" in out
    assert "connection refused" in out
    assert "requests fall back to: openai" in out


def test_missing_openai_key_is_a_problem() -> None:
    env = {k: v for k, v in HYBRID.items() if k != "OPENAI_API_KEY"}
    env["INFERENCE_PROVIDER"] = "openai"
    env["FALLBACK_CHAIN"] = "ollama"
    code, out = run(env, {"ollama": FakeBackend(models=["llama3.1:8b"]), "openai": FakeBackend()})
    assert code == 1
    assert "OPENAI_API_KEY" in out
    assert "requests fall back to: ollama" in out


def test_no_fallback_configured_is_said() -> None:
    env = {"INFERENCE_PROVIDER": "ollama", "INFERENCE_OLLAMA_BASE_URL": "http://o:11434"}
    code, out = run(env, {"ollama": FakeBackend("loading", detail="model loading")})
    assert code == 1
    assert "loading" in out
    assert "no fallback configured" in out


def test_every_replica_is_probed() -> None:
    env = {
        "INFERENCE_PROVIDER": "vllm",
        "INFERENCE_VLLM_BASE_URL": "http://vllm-0:8000,http://vllm-1:8000,http://vllm-2:8000",
        "INFERENCE_VLLM_MODEL": "meta-llama/Llama-3.1-8B-Instruct",
    }
    fake = FakeBackend(
        {
            "http://vllm-0:8000": "ready",
            "http://vllm-1:8000": "down",
            "http://vllm-2:8000": "ready",
        },
        models=["meta-llama/Llama-3.1-8B-Instruct"],
    )
    code, out = run(env, {"vllm": fake})
    assert code == 0, out
    assert fake.probed == ["http://vllm-0:8000", "http://vllm-1:8000", "http://vllm-2:8000"]
    assert "2 of 3 replicas ready" in out


def test_json_output() -> None:
    code, out = run(HYBRID, {"ollama": FakeBackend("down"), "openai": FakeBackend()}, as_json=True)
    assert code == 1
    data = json.loads(out)
    assert data["primary_usable"] is False
    assert [b["name"] for b in data["backends"]] == ["ollama", "openai"]
    assert data["backends"][1]["usable"] is True


def test_configuration_error_exits_two() -> None:
    code, out = run({"INFERENCE_PROVIDER": "ollama", "HEALTH_CHECK_TIMEOUT": "-3"}, {})
    assert code == 2
    assert "HEALTH_CHECK_TIMEOUT" in out


def test_doctor_vram_delegates_to_the_planner() -> None:
    code, out = run(
        {}, {}, vram=True, model="meta-llama/Llama-3.1-70B-Instruct", gpus="32,24",
        dtype="float16", max_model_len=4096, max_num_seqs=32, gpu_memory_utilization=0.95,
        tensor_parallel_size=2,
    )  # fmt: skip
    assert code == 2
    assert "DOES NOT FIT" in out


def test_real_vllm_plugin_against_a_mock_server() -> None:
    """The installed vLLM plugin's own health hook, through doctor, over a mock transport."""
    pytest.importorskip("inference_vllm")
    served = "meta-llama/Llama-3.1-8B-Instruct"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": served, "object": "model", "max_model_len": 8192}]})  # fmt: skip
        return httpx.Response(404, json={"detail": "Not Found"})

    env = {
        "INFERENCE_PROVIDER": "vllm",
        "INFERENCE_VLLM_BASE_URL": "http://vllm:8000",
        "VLLM_MODEL_NAME": served,
    }
    buf = io.StringIO()
    code = doctor.doctor_command(
        env=env, env_file=None, transport=httpx.MockTransport(handler),
        console=Console(file=buf, width=220),
    )  # fmt: skip
    assert code == 0, buf.getvalue()
    buf = io.StringIO()
    code = doctor.doctor_command(
        env={**env, "VLLM_MODEL_NAME": "meta-llama/Llama-3.1-70B-Instruct"}, env_file=None,
        transport=httpx.MockTransport(handler), console=Console(file=buf, width=220),
    )  # fmt: skip
    assert code == 1
    assert "is not on the backend" in buf.getvalue()


def test_register_adds_pull_and_doctor_to_the_inference_app() -> None:
    """What the lead wires into cli.py: `register(app, env=..., extra_plugins=..., ...)`."""
    from typer.testing import CliRunner

    from inference_core.cli import build_app
    from inference_core.ops import register

    plugins = {"ollama": FakeBackend(models=["llama3.1:8b"]), "openai": FakeBackend()}
    app = build_app(env=HYBRID, extra_plugins=plugins)
    if not {"pull", "doctor"} <= {c.name for c in app.registered_commands}:
        register(app, env=HYBRID, extra_plugins=plugins)
    runner = CliRunner()
    result = runner.invoke(app, ["--env-file", "", "doctor"])
    assert result.exit_code == 0, result.output
    assert "primary ollama is usable" in result.output
    result = runner.invoke(
        app,
        ["doctor", "--vram", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpus", "32,24",
         "--dtype", "float16", "--max-model-len", "4096", "--max-num-seqs", "32",
         "--gpu-memory-utilization", "0.95", "--tensor-parallel-size", "2"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "DOES NOT FIT" in result.output
    result = runner.invoke(app, ["pull", "some-model", "--backend", "vllm"])
    assert result.exit_code == 2
    assert "huggingface-cli download" in result.output


def test_real_ollama_plugin_against_the_ollama_fake() -> None:
    """The installed Ollama plugin, through doctor, against tests/fakes' Ollama server."""
    pytest.importorskip("inference_ollama")
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.fakes.ollama_server import FakeOllamaServer

    with FakeOllamaServer(models=["llama3.1:8b"]) as fake:
        env = {"INFERENCE_PROVIDER": "ollama", "INFERENCE_OLLAMA_BASE_URL": fake.url}
        code, out = run({**env, "INFERENCE_OLLAMA_MODEL": "llama3.1:8b"}, {})
        assert code == 0, out
        code, out = run({**env, "INFERENCE_OLLAMA_MODEL": "mistral:7b"}, {})
        assert code == 1, out
        assert "primary ollama is not usable" in out
        # the plugin's own health says the model is not pulled, and how to pull it
        assert "mistral:7b" in out
        assert "pull" in out.split("primary ollama")[0]
