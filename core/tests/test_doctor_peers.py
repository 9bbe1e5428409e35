"""`inference doctor` against the real llama.cpp and vLLM peers (scripts/peers).

Skipped when INFERENCE_TEST_LLAMACPP_URL / INFERENCE_TEST_VLLM_CHAT_URL are unset, failed when
they are unset under INFERENCE_REQUIRE_PEERS=1 (CI).
"""

from __future__ import annotations

import io

import httpx
from rich.console import Console

from inference_core.ops import doctor
from inference_core.testing import dead_url, peer_url


def run(env: dict[str, str]) -> tuple[int, str]:
    buf = io.StringIO()
    code = doctor.doctor_command(env=env, env_file=None, console=Console(file=buf, width=250))
    return code, buf.getvalue()


def test_doctor_on_the_real_llama_server() -> None:
    url = peer_url("INFERENCE_TEST_LLAMACPP_URL")
    code, out = run({"INFERENCE_PROVIDER": "llamacpp", "INFERENCE_LLAMACPP_BASE_URL": url})
    assert code == 0, out
    assert "ready" in out
    assert "primary llamacpp is usable" in out


def test_doctor_checks_the_model_the_real_vllm_serves() -> None:
    url = peer_url("INFERENCE_TEST_VLLM_CHAT_URL")
    served = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
    env = {"INFERENCE_PROVIDER": "vllm", "INFERENCE_VLLM_BASE_URL": url}
    code, out = run({**env, "VLLM_MODEL_NAME": served})
    assert code == 0, out
    code, out = run({**env, "VLLM_MODEL_NAME": "meta-llama/Llama-3.1-70B-Instruct"})
    assert code == 1, out
    assert "is not on the backend" in out
    assert served in out


def test_dead_primary_falls_back_to_the_real_llama_server() -> None:
    url = peer_url("INFERENCE_TEST_LLAMACPP_URL")
    code, out = run({
        "INFERENCE_PROVIDER": "vllm",
        "INFERENCE_VLLM_BASE_URL": dead_url(),
        "ENABLE_FALLBACK": "true",
        "FALLBACK_CHAIN": "llamacpp",
        "INFERENCE_LLAMACPP_BASE_URL": url,
        "HEALTH_CHECK_TIMEOUT": "3",
    })  # fmt: skip
    assert code == 1, out
    assert "primary vllm is not usable" in out
    assert "requests fall back to: llamacpp" in out
