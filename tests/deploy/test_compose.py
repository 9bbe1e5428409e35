"""compose.yaml, checked without a Docker engine: schema, profiles, pinning, variables, health."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from inference_core.ops import vram

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
PUBLISH_FILE = ROOT / "compose.publish.yaml"
KEYS = {"INFERENCE_GATEWAY_API_KEYS": "k1"}  # compose refuses to interpolate without them

BACKENDS = {"vllm", "ollama", "llamacpp", "textgen"}
PROFILES = {*BACKENDS, "local-inference"}
EXPECTED = {
    None: {"gateway"},
    "vllm": {"gateway", "vllm", "vllm-pull"},
    "ollama": {"gateway", "ollama", "ollama-pull"},
    "llamacpp": {"gateway", "llamacpp", "llamacpp-pull"},
    "textgen": {"gateway", "textgen"},
    "local-inference": {
        "gateway", "vllm", "vllm-pull", "ollama", "ollama-pull", "llamacpp", "llamacpp-pull",
        "textgen",
    },
}  # fmt: skip


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


def test_compose_validates_against_the_compose_specification(compose, compose_tools) -> None:
    v = validator()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(compose)]
    assert errors == []
    # and after interpolation with every default (what `docker compose config` validates)
    resolved = compose_tools["interpolate_tree"](compose, KEYS)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(resolved)
    ]
    assert errors == []
    # the loopback publishing override too
    publish = yaml.safe_load(PUBLISH_FILE.read_text())
    for doc in (publish, compose_tools["interpolate_tree"](publish, {})):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
        assert errors == []


def test_schema_rejects_a_broken_compose_file(compose) -> None:
    """The validation above has teeth: a misspelled key fails it."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["healthchek"] = {"test": ["CMD", "true"]}
    assert list(validator().iter_errors(broken))


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_each_profile_activates_the_expected_services(compose, compose_tools, profile) -> None:
    active = compose_tools["active_services"](compose, {profile} if profile else set())
    assert active == EXPECTED[profile]
    for name in active:
        deps = compose["services"][name].get("depends_on") or {}
        for target in deps:
            target_svc = compose["services"].get(target)
            assert target_svc is not None, f"{name} depends on undefined {target}"
            assert target in active or not target_svc.get("profiles"), (
                f"--profile {profile}: {name} depends on {target}, which that profile leaves out"
            )


def test_profiles_are_the_documented_ones_and_gateway_is_default(compose) -> None:
    for name, svc in compose["services"].items():
        assert set(svc.get("profiles") or []) <= PROFILES, name
    assert "profiles" not in compose["services"]["gateway"]
    for backend in BACKENDS:
        assert set(compose["services"][backend]["profiles"]) == {backend, "local-inference"}


def image_ref(compose: dict[str, Any], service: str, compose_tools) -> str | None:
    image = compose["services"][service].get("image")
    return compose_tools["interpolate"](image, {}) if image else None


def test_every_image_is_pinned(compose, compose_tools) -> None:
    for name, svc in compose["services"].items():
        ref = image_ref(compose, name, compose_tools)
        if ref is None:
            assert "build" in svc, f"{name} has neither image nor build"
            continue
        if "@sha256:" in ref:
            assert re.search(r"@sha256:[0-9a-f]{64}$", ref), ref
            continue
        last = ref.rsplit("/", 1)[-1]
        assert ":" in last, f"{name}: {ref} has no tag (means latest)"
        tag = last.split(":", 1)[1]
        assert tag, f"{name}: {ref}"
        assert "latest" not in tag, f"{name}: {ref}"
        assert "nightly" not in tag, f"{name}: {ref}"


def test_llamacpp_uses_the_ggml_org_server_image(compose) -> None:
    assert compose["services"]["llamacpp"]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server-")


def test_vllm_gets_its_settings_as_command_line_arguments(compose, compose_tools) -> None:
    svc = compose["services"]["vllm"]
    args = compose_tools["interpolate_tree"](svc["command"], {})
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--model"] == vram.COMPOSE_DEFAULTS["VLLM_MODEL_NAME"]
    for flag in (
        "--tensor-parallel-size", "--max-model-len", "--gpu-memory-utilization",
        "--max-num-seqs", "--dtype", "--pipeline-parallel-size", "--kv-cache-dtype",
    ):  # fmt: skip
        assert flag in pairs, flag
    # the image reads none of the seed's variables: they must not be pretended to work
    # (ENABLE_CHUNKED_PREFILL is there for the entrypoint, which turns it into a flag:
    # tests/deploy/test_compose_security.py runs it)
    env = svc.get("environment") or {}
    for fake in ("MODEL_NAME", "TENSOR_PARALLEL_SIZE", "MAX_MODEL_LEN", "GPU_MEMORY_UTILIZATION",
                 "DTYPE", "MAX_NUM_SEQS"):  # fmt: skip
        assert fake not in env
    # with variables set, they become the arguments
    set_env = {"VLLM_TENSOR_PARALLEL_SIZE": "2", "VLLM_MAX_MODEL_LEN": "4096"}
    args = compose_tools["interpolate_tree"](svc["command"], set_env)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--tensor-parallel-size"] == "2"
    assert pairs["--max-model-len"] == "4096"


def test_planner_defaults_match_compose_defaults(compose, compose_tools) -> None:
    """`inference doctor --vram` with no flags plans exactly what compose starts."""
    args = compose_tools["interpolate_tree"](compose["services"]["vllm"]["command"], {})
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    flag_for = {
        "VLLM_MODEL_NAME": "--model",
        "VLLM_TENSOR_PARALLEL_SIZE": "--tensor-parallel-size",
        "VLLM_PIPELINE_PARALLEL_SIZE": "--pipeline-parallel-size",
        "VLLM_GPU_MEMORY_UTILIZATION": "--gpu-memory-utilization",
        "VLLM_MAX_MODEL_LEN": "--max-model-len",
        "VLLM_MAX_NUM_SEQS": "--max-num-seqs",
        "VLLM_DTYPE": "--dtype",
        "VLLM_KV_CACHE_DTYPE": "--kv-cache-dtype",
    }
    assert set(flag_for) == set(vram.COMPOSE_DEFAULTS)
    for var, flag in flag_for.items():
        assert pairs[flag] == vram.COMPOSE_DEFAULTS[var], var
    gw = compose_tools["container_env"](compose, "gateway", KEYS)
    assert gw["VLLM_MODEL_NAME"] == vram.COMPOSE_DEFAULTS["VLLM_MODEL_NAME"]


def used_variables(compose, compose_tools) -> set[str]:
    names: set[str] = set()
    publish = yaml.safe_load(PUBLISH_FILE.read_text())
    for s in compose_tools["walk_strings"](compose) + compose_tools["walk_strings"](publish):
        names |= compose_tools["variables_in"](s)
    for svc in compose["services"].values():  # pass-through (null) environment entries
        env = svc.get("environment") or {}
        if isinstance(env, dict):
            names |= {k for k, v in env.items() if v is None}
    return names


def documented_variables() -> set[str]:
    text = ENV_EXAMPLE.read_text()
    return set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_every_variable_compose_uses_is_in_env_example(compose, compose_tools) -> None:
    used = used_variables(compose, compose_tools)
    assert {"VLLM_TENSOR_PARALLEL_SIZE", "HF_TOKEN", "OPENAI_API_KEY"} <= used
    assert ENV_EXAMPLE.exists(), ".env.example is missing"
    missing = sorted(used - documented_variables())
    assert missing == [], f"used in compose.yaml, not in .env.example: {missing}"


# Variables only compose.yaml reads: .env.example lists them in its "compose / deployment"
# section (and nothing else there).
COMPOSE_ONLY = {
    "GATEWAY_HOST_PORT", "VLLM_HOST_PORT", "OLLAMA_HOST_PORT", "LLAMACPP_HOST_PORT",
    "TEXTGEN_HOST_PORT", "TEXTGEN_UI_HOST_PORT", "INFERENCE_IMAGE_PLUGINS", "INFERENCE_IMAGE_TAG",
    "VLLM_GPU_COUNT", "OLLAMA_MODEL", "LLAMACPP_MODEL_URL", "LLAMACPP_MODEL_FILE",
    "LLAMACPP_MODEL_SHA256", "LLAMACPP_CTX_SIZE", "LLAMACPP_PARALLEL", "TEXTGEN_EXTRA_ARGS",
}  # fmt: skip


def test_env_example_has_a_compose_section_with_the_compose_only_variables(
    compose, compose_tools
) -> None:
    text = ENV_EXAMPLE.read_text()
    marker = "# --- compose / deployment ---"
    assert marker in text
    section = text.split(marker, 1)[1]
    names = set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", section, flags=re.MULTILINE))
    assert names == COMPOSE_ONLY
    assert used_variables(compose, compose_tools) >= COMPOSE_ONLY


def test_long_running_services_have_fitting_healthchecks(compose) -> None:
    def seconds(value: str) -> float:
        total = 0.0
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
            total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        return total

    long_running = {n for n, s in compose["services"].items() if s.get("restart") != "no"}
    assert long_running == {"gateway", *BACKENDS}
    start = {}
    for name in long_running:
        hc = compose["services"][name].get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        assert hc["test"][0] == "CMD"
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in hc, (name, key)
        start[name] = seconds(hc["start_period"])
    assert start["vllm"] >= 300  # minutes: weights download + load + CUDA graph capture
    assert start["llamacpp"] <= 120  # seconds: mmap a GGUF
    assert start["ollama"] <= 60  # the server answers at once; models load on demand
    probes = {n: " ".join(compose["services"][n]["healthcheck"]["test"]) for n in long_running}
    assert "/health" in probes["vllm"]
    assert "python3" in probes["vllm"]  # the vLLM image has python3, not necessarily curl
    assert "curl" in probes["llamacpp"]
    assert "/health" in probes["llamacpp"]
    assert "ollama list" in probes["ollama"]
    assert "/v1/internal/health" in probes["textgen"]
    assert "/health" in probes["gateway"]
    assert "curl" not in probes["gateway"]  # the slim python image has no curl


def test_gpu_reservations_where_they_apply(compose) -> None:
    def gpu(name: str) -> bool:
        devices = (
            compose["services"][name]
            .get("deploy", {})
            .get("resources", {})
            .get("reservations", {})
            .get("devices", [])
        )
        return any("gpu" in d.get("capabilities", []) for d in devices)

    assert gpu("vllm")
    assert gpu("ollama")
    assert gpu("textgen")
    assert not gpu("gateway")
    assert not gpu("llamacpp")  # the CPU server image


def test_gateway_reaches_each_backend_by_service_name(compose, compose_tools) -> None:
    env = compose_tools["container_env"](compose, "gateway", KEYS)
    assert env["INFERENCE_PROVIDER"] == "openai"  # the gateway alone by default
    container_port = {"vllm": 8000, "ollama": 11434, "llamacpp": 8080, "textgen": 5000}
    publish = yaml.safe_load(PUBLISH_FILE.read_text())
    for backend, port in container_port.items():
        url = env[f"INFERENCE_{backend.upper()}_BASE_URL"]
        assert url == f"http://{backend}:{port}"
        # published only by the loopback override (tests/deploy/test_compose_security.py)
        published = [str(p) for p in publish["services"][backend].get("ports", [])]
        assert any(p.endswith(f":{port}") for p in published), (backend, published)
    # a value from .env wins over the service-name default
    env = compose_tools["container_env"](
        compose, "gateway", {**KEYS, "INFERENCE_VLLM_BASE_URL": "http://a:8000,http://b:8000"}
    )
    assert env["INFERENCE_VLLM_BASE_URL"] == "http://a:8000,http://b:8000"


def test_gateway_service_builds_the_repo_dockerfile(compose) -> None:
    build = compose["services"]["gateway"]["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]).is_file()
    assert "PLUGINS" in build["args"]


def test_named_volumes_are_declared(compose) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source")
            if source and not source.startswith((".", "/")):
                used.add(source)
    assert used
    assert used <= declared
    assert {"vllm-models", "ollama-models", "llamacpp-models"} <= used


def test_interpolation_helper_follows_compose_rules(compose_tools) -> None:
    f = compose_tools["interpolate"]
    assert f("${A:-x}", {}) == "x"
    assert f("${A:-x}", {"A": ""}) == "x"
    assert f("${A-x}", {"A": ""}) == ""
    assert f("${A:-${B:-y}}", {}) == "y"
    assert f("$$HOME ${A}", {"A": "1"}) == "$HOME 1"
    assert f("${A:+set}", {"A": "1"}) == "set"
    with pytest.raises(compose_tools["InterpolationError"]):
        f("${A:?required}", {})


def test_deployment_doc_names_the_pinned_images(compose, compose_tools) -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for name in compose["services"]:
        ref = image_ref(compose, name, compose_tools)
        assert f"`{ref}`" in doc, (name, ref)
