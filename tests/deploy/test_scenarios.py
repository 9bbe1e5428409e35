"""docs/deployment.md's scenarios: the doc quotes scenarios.yaml, and the variables mean what the
doc says they mean once compose.yaml hands them to the gateway."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference_core.ops import vram
from inference_core.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "deployment.md"
SCENARIOS: list[dict[str, Any]] = yaml.safe_load((HERE / "scenarios.yaml").read_text())
BY_ID = {s["id"]: s for s in SCENARIOS}


def dotenv(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def doc() -> str:
    return DOC.read_text()


def test_the_seed_scenarios_and_scaling_are_all_there() -> None:
    assert {"openai-only", "vllm", "ollama", "hybrid", "development", "kubernetes"} <= set(BY_ID)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_doc_quotes_the_scenario_verbatim(sc: dict[str, Any]) -> None:
    text = doc()
    assert f"### {sc['title']}\n" in text
    section = text.split(f"### {sc['title']}\n", 1)[1].split("\n### ", 1)[0]
    assert f"```bash\n{sc['env']}```" in section, "env block differs from scenarios.yaml"
    for command in sc["commands"]:
        assert command in section, command


def gateway_env(sc: dict[str, Any], compose: dict[str, Any], tools: dict[str, Any]) -> dict:
    env = dotenv(sc["env"])
    if sc.get("runtime") == "direct":
        return env
    return tools["container_env"](compose, "gateway", env)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_scenario_resolves_to_the_documented_chain(sc, compose, compose_tools) -> None:
    settings = Settings.from_env(env=gateway_env(sc, compose, compose_tools), env_file=None)
    assert settings.chain == sc["chain"]
    for name, expected in sc["backends"].items():
        config = settings.backend(name)
        assert list(config.base_urls) == expected["base_urls"], name
        if "model" in expected:
            assert config.model == expected["model"], name
        if "api_key" in expected:
            assert (config.api_key is not None) == expected["api_key"], name
    # falling back never sends one backend's model name to another
    models = [settings.backend(n).model for n in settings.chain if settings.backend(n).model]
    assert len(models) == len(set(models))


@pytest.mark.parametrize(
    "sc", [s for s in SCENARIOS if s.get("runtime") != "direct"], ids=lambda s: s["id"]
)
def test_compose_commands_start_what_the_chain_needs(sc, compose, compose_tools) -> None:
    profiles: set[str] = set()
    for command in sc["commands"]:
        if command.startswith("docker compose"):
            profiles |= set(re.findall(r"--profile (\S+)", command))
    assert profiles == set(sc["profiles"])
    active = compose_tools["active_services"](compose, profiles)
    assert active == set(sc["services"])
    settings = Settings.from_env(env=gateway_env(sc, compose, compose_tools), env_file=None)
    for name in settings.chain:
        for url in settings.backend(name).base_urls:
            host = re.match(r"https?://([^:/]+)", url).group(1)  # type: ignore[union-attr]
            if host in compose["services"]:
                assert host in active, f"{sc['id']}: {name} -> {url}, but {host} is not started"
            else:
                assert name == "openai", f"{sc['id']}: {name} points outside compose: {url}"


@pytest.mark.parametrize("sc", [s for s in SCENARIOS if "vram" in s], ids=lambda s: s["id"])
def test_vram_verdict_quoted_by_the_doc(sc: dict[str, Any]) -> None:
    env = dotenv(sc["env"])
    result = vram.plan(vram.plan_input_from_env(env, gpus=sc["vram"]["gpus"]))
    assert result.verdict == sc["vram"]["verdict"]


def k8s_documents() -> list[dict[str, Any]]:
    text = doc()
    section = text.split(f"### {BY_ID['kubernetes']['title']}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert blocks
    return [d for b in blocks for d in yaml.safe_load_all(b) if d]


def test_kubernetes_example_matches_the_scenario() -> None:
    docs = k8s_documents()
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    gateway = kinds[("Deployment", "inference-gateway")]
    assert gateway["spec"]["replicas"] >= 2  # stateless: any number behind one Service
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    values = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
    assert values == dotenv(BY_ID["kubernetes"]["env"])
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert "OPENAI_API_KEY" in secrets
    assert "INFERENCE_GATEWAY_API_KEYS" in secrets  # the image binds 0.0.0.0: keys required
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    service = kinds[("Service", "inference-gateway")]
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()

    vllm = kinds[("StatefulSet", "vllm")]
    headless = kinds[("Service", vllm["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    expected = [
        f"http://{vllm['metadata']['name']}-{i}.{vllm['spec']['serviceName']}:8000"
        for i in range(vllm["spec"]["replicas"])
    ]
    assert BY_ID["kubernetes"]["backends"]["vllm"]["base_urls"] == expected
    args = vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == dotenv(BY_ID["kubernetes"]["env"])["VLLM_MODEL_NAME"]
