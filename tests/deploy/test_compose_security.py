"""compose.yaml's security defaults (issue #11, item 1) and the configuration traps of issue #9
that compose.yaml itself caused, checked without a Docker engine.

* Only the gateway publishes a port; every backend is on the internal ``backends`` network only,
  and the loopback override ``compose.publish.yaml`` binds every port it publishes to 127.0.0.1.
* The gateway's keys are required (``${INFERENCE_GATEWAY_API_KEYS:?...}``): without them compose
  stops with a message naming the variable.
* vLLM is started with ``--api-key``; its entrypoint script is run here with ``sh`` and a
  stand-in ``python3`` that prints the arguments it got, so the flags it builds are the ones the
  real container would run with.
* ``VLLM_QUANTIZATION``, ``VLLM_MAX_NUM_BATCHED_TOKENS`` and ``ENABLE_CHUNKED_PREFILL`` reach vLLM;
  the seed's ``LOCAL_MODEL_NAME`` reaches the gateway's Ollama backend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"INFERENCE_GATEWAY_API_KEYS": "k1"}
BACKENDS = ("vllm", "ollama", "llamacpp", "textgen")
SH = shutil.which("sh")


def networks_of(svc: dict[str, Any]) -> set[str]:
    nets = svc.get("networks") or ["default"]
    return set(nets)  # a list, or a mapping of network -> options


def test_only_the_gateway_publishes_a_port(compose) -> None:
    for name, svc in compose["services"].items():
        if name == "gateway":
            assert svc.get("ports"), "the gateway is the one published service"
            continue
        assert not svc.get("ports"), f"{name} publishes {svc.get('ports')}"
        assert not svc.get("network_mode"), name  # host networking would bypass all of it


def test_backends_sit_on_an_internal_network_only(compose) -> None:
    nets = compose["networks"]
    internal = {n for n, spec in nets.items() if (spec or {}).get("internal") is True}
    assert internal == {"backends"}
    for backend in BACKENDS:
        assert networks_of(compose["services"][backend]) == {"backends"}, backend
    assert networks_of(compose["services"]["gateway"]) == {"edge", "backends"}
    # the one-shots download, so they have a way out, and no way to the backends' network
    for name, svc in compose["services"].items():
        if name.endswith("-pull"):
            assert networks_of(svc) == {"edge"}, name
            assert svc.get("restart") == "no", name


def test_the_publish_override_binds_loopback_only(compose_tools) -> None:
    publish = yaml.safe_load((ROOT / "compose.publish.yaml").read_text())
    assert set(publish["services"]) == set(BACKENDS)
    for name, svc in publish["services"].items():
        ports = compose_tools["interpolate_tree"](svc["ports"], {})
        assert ports
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)
        # a published port needs a non-internal network
        assert "edge" in networks_of(svc), name


def test_the_gateway_keys_are_required(compose, compose_tools) -> None:
    with pytest.raises(compose_tools["InterpolationError"]) as err:
        compose_tools["container_env"](compose, "gateway", {})
    assert "INFERENCE_GATEWAY_API_KEYS" in str(err.value)
    assert "docs/security.md" in str(err.value)
    env = compose_tools["container_env"](compose, "gateway", {"INFERENCE_GATEWAY_API_KEYS": "a,b"})
    assert env["INFERENCE_GATEWAY_API_KEYS"] == "a,b"


# ---------------------------------------------------------------------------- vLLM's entrypoint


def run_vllm_entrypoint(
    compose: dict[str, Any], compose_tools: dict[str, Any], dotenv: dict[str, str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    """Run the vLLM service's entrypoint + command, as Docker would, with a stand-in python3."""
    if SH is None:
        pytest.skip("no sh on this machine")
    svc = compose["services"]["vllm"]
    entrypoint = compose_tools["interpolate_tree"](svc["entrypoint"], dotenv)
    command = compose_tools["interpolate_tree"](svc["command"], dotenv)
    container_env = compose_tools["container_env"](compose, "vllm", dotenv)
    fake = tmp / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "python3").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake / "python3").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}", **container_env}
    argv = [SH if entrypoint[0] == "/bin/sh" else entrypoint[0], *entrypoint[1:], *command]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def test_vllm_is_started_with_the_api_key_and_refuses_without(
    compose, compose_tools, tmp_path
) -> None:
    proc = run_vllm_entrypoint(compose, compose_tools, KEYS, tmp_path)
    assert proc.returncode == 2
    assert "INFERENCE_VLLM_API_KEY" in proc.stderr
    proc = run_vllm_entrypoint(
        compose, compose_tools, {**KEYS, "INFERENCE_VLLM_API_KEY": "vk-1"}, tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--api-key") + 1] == "vk-1"
    assert argv[argv.index("--model") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    for flag in ("--quantization", "--max-num-batched-tokens", "--enable-chunked-prefill"):
        assert flag not in argv  # unset: vLLM's own default
    # and the gateway sends the same key
    gw = compose_tools["container_env"](
        compose, "gateway", {**KEYS, "INFERENCE_VLLM_API_KEY": "vk-1"}
    )
    settings = Settings.from_env(env={**gw, "INFERENCE_PROVIDER": "vllm"}, env_file=None)
    assert settings.backend("vllm").api_key.get_secret_value() == "vk-1"


def test_env_example_vllm_settings_reach_the_vllm_container(
    compose, compose_tools, tmp_path
) -> None:
    dotenv = {
        **KEYS,
        "INFERENCE_VLLM_API_KEY": "vk",
        "VLLM_QUANTIZATION": "awq",
        "VLLM_MAX_NUM_BATCHED_TOKENS": "4096",
        "ENABLE_CHUNKED_PREFILL": "true",
    }
    proc = run_vllm_entrypoint(compose, compose_tools, dotenv, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[argv.index("--quantization") + 1] == "awq"
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "4096"
    assert "--enable-chunked-prefill" in argv
    proc = run_vllm_entrypoint(
        compose, compose_tools, {**dotenv, "ENABLE_CHUNKED_PREFILL": "false"}, tmp_path
    )
    assert "--no-enable-chunked-prefill" in proc.stdout.splitlines()
    proc = run_vllm_entrypoint(
        compose, compose_tools, {**dotenv, "ENABLE_CHUNKED_PREFILL": "maybe"}, tmp_path
    )
    assert proc.returncode == 2
    assert "ENABLE_CHUNKED_PREFILL must be true or false" in proc.stderr


def test_vllm_accepts_the_flags_the_entrypoint_adds(compose, compose_tools, tmp_path) -> None:
    """Against the real vLLM's --help (the peers' venv), like tests/deploy/test_compose_args."""
    import importlib.util

    path = Path(__file__).with_name("test_compose_args.py")
    spec = importlib.util.spec_from_file_location("_args", path)
    assert spec is not None
    assert spec.loader is not None
    args = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(args)
    cache_root, help_text, need = args.cache_root, args.help_text, args.need
    python = need(cache_root() / "peers" / "vllm" / "venv" / "bin" / "python", "the vLLM venv")
    text = help_text((str(python), "-m", "vllm.entrypoints.openai.api_server", "--help=all"))
    for flag in ("--api-key", "--quantization", "--max-num-batched-tokens",
                 "--enable-chunked-prefill", "--no-enable-chunked-prefill"):  # fmt: skip
        assert flag in text, flag


# ------------------------------------------------------------------------------- Ollama's model


def ollama_model(compose, compose_tools, dotenv: dict[str, str]) -> tuple[str | None, str]:
    """(the gateway's Ollama model, the model ollama-pull pulls) for a given .env."""
    gw = compose_tools["container_env"](compose, "gateway", {**KEYS, **dotenv})
    settings = Settings.from_env(env=gw, env_file=None)
    pulled = compose_tools["interpolate_tree"](
        compose["services"]["ollama-pull"]["command"], {**KEYS, **dotenv}
    )
    return settings.backend("ollama").model, pulled[-1]


def test_the_seed_local_model_name_reaches_ollama_under_compose(compose, compose_tools) -> None:
    seed = {"INFERENCE_PROVIDER": "ollama", "LOCAL_MODEL_NAME": "qwen2.5:0.5b"}
    assert ollama_model(compose, compose_tools, seed) == ("qwen2.5:0.5b", "qwen2.5:0.5b")
    # nothing set: compose's default model, pulled and served
    assert ollama_model(compose, compose_tools, {"INFERENCE_PROVIDER": "ollama"}) == (
        "llama3.1:8b",
        "llama3.1:8b",
    )
    # OLLAMA_MODEL alone: that one
    env = {"INFERENCE_PROVIDER": "ollama", "OLLAMA_MODEL": "phi3:mini"}
    assert ollama_model(compose, compose_tools, env) == ("phi3:mini", "phi3:mini")
    # the namespaced variable wins over both
    env = {**seed, "INFERENCE_OLLAMA_MODEL": "gemma3:1b"}
    assert ollama_model(compose, compose_tools, env) == ("gemma3:1b", "gemma3:1b")


def test_ollama_pull_runs_its_own_server_and_the_serving_one_waits(compose) -> None:
    pull = compose["services"]["ollama-pull"]
    script = "\n".join(pull["entrypoint"])
    assert "ollama serve" in script
    assert 'ollama pull "$$1"' in script
    assert pull["environment"]["OLLAMA_HOST"].startswith("127.0.0.1")
    deps = compose["services"]["ollama"]["depends_on"]
    assert deps["ollama-pull"]["condition"] == "service_completed_successfully"
