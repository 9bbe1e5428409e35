"""deploy/kubernetes/, checked offline: the Kubernetes JSON schemas of a pinned version, and
what a schema cannot see (selectors that select, ports that agree, probes the gateway answers,
variables the code reads, Secrets that hold what is referenced, pods that meet "restricted").

No cluster runs here: the schemas come from PyPI's ``kubernetes-validate``; the gateway the
probes hit is the real app, built from the ConfigMap's own settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
BASE = KUBE / "base"
SECRETS_EXAMPLE = KUBE / "secrets.example.yaml"
#: The Kubernetes version the manifests are validated against (kubernetes-validate ships it).
KUBERNETES_VERSION = "1.33.0"

GATEWAY = {"app.kubernetes.io/name": "inference-gateway", "app.kubernetes.io/component": "gateway"}


# ---------------------------------------------------------------------------- loading


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs.extend(load(BASE / name))
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in resources() if d["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return found


def workloads() -> list[dict[str, Any]]:
    return [d for d in resources() if d["kind"] in ("Deployment", "StatefulSet")]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def gateway_container() -> dict[str, Any]:
    (container,) = named("Deployment", "inference-gateway")["spec"]["template"]["spec"][
        "containers"
    ]
    return container


def config() -> dict[str, str]:
    return named("ConfigMap", "inference-gateway-config")["data"]


def example_secret() -> dict[str, str]:
    (secret,) = load(SECRETS_EXAMPLE)
    return secret["stringData"]


def all_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for w in workloads():
        spec = w["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield w, c


def documented_variables() -> set[str]:
    line = re.compile(r"^#?([A-Z][A-Z0-9_]*)=")
    return {
        m.group(1)
        for raw in (ROOT / ".env.example").read_text().splitlines()
        if (m := line.match(raw.strip()))
    }


# ----------------------------------------------------------------------------- schemas


def test_the_kustomization_lists_every_manifest_of_base() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert "secrets.example.yaml" not in listed  # real secrets are never part of the base


def every_document() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(KUBE.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for i, doc in enumerate(load(path)):
            out.append((f"{path.relative_to(KUBE)}#{i}:{doc.get('kind')}", doc))
    return out


@pytest.mark.parametrize(
    ("where", "doc"), every_document(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_manifest_is_valid_for_the_pinned_kubernetes(where: str, doc: dict[str, Any]) -> None:
    # strict: an unknown or misspelt field is an error, as `kubectl apply --validate=strict`
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("spec", "replicas"), "two"),
        (("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet", "paht"), "/x"),
        (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "http"),
    ],
)
def test_the_validator_rejects_a_broken_deployment(path: tuple[Any, ...], bad: Any) -> None:
    """The check above can fail: the same Deployment with one mistake is refused."""
    doc = named("Deployment", "inference-gateway")
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_gateway_objects_are_all_there() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in resources()}
    for expected in [
        ("Deployment", "inference-gateway"),
        ("Service", "inference-gateway"),
        ("HorizontalPodAutoscaler", "inference-gateway"),
        ("PodDisruptionBudget", "inference-gateway"),
        ("ConfigMap", "inference-gateway-config"),
        ("Deployment", "redis"),
        ("Service", "redis"),
        ("Service", "vllm"),
        ("Service", "ollama"),
    ]:
        assert expected in kinds


# ----------------------------------------------------------------- selectors and ports


def test_each_workload_selects_its_own_pods() -> None:
    for w in workloads():
        assert selects(w["spec"]["selector"]["matchLabels"], pod_labels(w)), w["metadata"]["name"]


def test_each_service_selects_exactly_one_workload_and_its_named_port() -> None:
    for svc in of_kind("Service"):
        matched = [w for w in workloads() if selects(svc["spec"]["selector"], pod_labels(w))]
        assert len(matched) == 1, svc["metadata"]["name"]
        containers = matched[0]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports if isinstance(target, str) else target in ports.values()


def service_port(name: str) -> int:
    (port,) = named("Service", name)["spec"]["ports"]
    return port["port"]


@pytest.mark.parametrize("backend", ["vllm", "ollama"])
def test_the_backend_urls_point_at_their_services(backend: str) -> None:
    url = urlsplit(config()[f"INFERENCE_{backend.upper()}_BASE_URL"])
    assert url.hostname == backend
    assert url.port == service_port(backend)
    (container,) = named("Deployment", backend)["spec"]["template"]["spec"]["containers"]
    assert url.port in {p["containerPort"] for p in container["ports"]}
    if "args" in container:  # vLLM: the port it is started on
        args = container["args"]
        assert args[args.index("--port") + 1] == str(url.port)


def test_the_redis_url_points_at_the_redis_service_with_its_password() -> None:
    secret = example_secret()
    url = urlsplit(secret["INFERENCE_REDIS_URL"])
    assert url.scheme == "redis"
    assert (url.hostname, url.port) == ("redis", service_port("redis"))
    assert url.password == secret["REDIS_PASSWORD"]
    args = named("Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"


def test_the_gateway_port_agrees_everywhere() -> None:
    port = int(config()["INFERENCE_GATEWAY_PORT"])
    (declared,) = gateway_container()["ports"]
    assert declared == {"name": "http", "containerPort": port, "protocol": "TCP"}
    assert f"EXPOSE {port}" in (ROOT / "Dockerfile").read_text()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gateway_container()[probe]["httpGet"]["port"] == "http"
    (svc_port,) = named("Service", "inference-gateway")["spec"]["ports"]
    assert svc_port["targetPort"] == "http"


def test_autoscaler_and_disruption_budget_fit_the_deployment() -> None:
    deployment = named("Deployment", "inference-gateway")
    hpa = named("HorizontalPodAutoscaler", "inference-gateway")["spec"]
    pdb = named("PodDisruptionBudget", "inference-gateway")["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "inference-gateway")
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    assert selects(pdb["selector"]["matchLabels"], pod_labels(deployment))
    # a drain can always evict one pod without breaking the budget
    assert pdb["minAvailable"] < hpa["minReplicas"]
    # the HPA scales on CPU utilisation: every container must request CPU
    assert gateway_container()["resources"]["requests"]["cpu"]


def test_backends_and_redis_only_take_traffic_from_the_gateway() -> None:
    policies = of_kind("NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"]
        and "ingress" not in p["spec"]
        for p in policies
    ), "a default deny of ingress"  # fmt: skip
    for name in ("vllm", "ollama", "redis"):
        w = named("Deployment", name)
        covering = [
            p
            for p in policies
            if p["spec"]["podSelector"]
            and selects(p["spec"]["podSelector"].get("matchLabels", {}), pod_labels(w))
        ]
        assert covering, f"no policy selects {name}"
        ports = {p["name"] for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for policy in covering:
            for rule in policy["spec"]["ingress"]:
                peers = rule["from"]
                assert peers == [{"podSelector": {"matchLabels": GATEWAY}}], name
                assert {p["port"] for p in rule["ports"]} <= ports
        assert named("Service", name)["spec"]["type"] == "ClusterIP"  # internal only
    gateway = named("Deployment", "inference-gateway")
    assert selects(GATEWAY, pod_labels(gateway))


# ------------------------------------------------------------------- the gateway itself


def gateway_env() -> dict[str, str]:
    """The environment the gateway container gets, with the example Secret's values."""
    env = dict(config())
    secret = example_secret()
    for var in gateway_container()["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret[ref["key"]]
    return env


def test_every_variable_the_gateway_gets_is_one_the_code_reads() -> None:
    """.env.example lists what the code reads (core/tests/test_env_example.py checks that)."""
    container = gateway_container()
    assert container["envFrom"] == [{"configMapRef": {"name": "inference-gateway-config"}}]
    names = set(config()) | {v["name"] for v in container["env"]}
    documented = documented_variables()
    unknown = sorted(names - documented)
    assert not unknown, f"set by the manifests but read by nothing: {unknown}"


def test_every_referenced_secret_key_is_in_the_example_secret() -> None:
    secret = example_secret()
    (doc,) = load(SECRETS_EXAMPLE)
    for _, container in all_containers():
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == doc["metadata"]["name"]
                assert ref["key"] in secret, ref
            ref = var.get("valueFrom", {}).get("configMapKeyRef")
            if ref is not None:
                assert ref["name"] == "inference-gateway-config"
                assert ref["key"] in config(), ref


def test_the_configmap_is_a_valid_configuration() -> None:
    from inference_core.gateway.settings import GatewaySettings
    from inference_core.settings import Settings

    env = gateway_env()
    settings = Settings.from_env(env, env_file=None)
    assert settings.backend("vllm").base_url == "http://vllm:8000"
    assert settings.backend("ollama").model == config()["INFERENCE_OLLAMA_MODEL"]
    # the vLLM model falls back to the models the other backends are configured with
    (targets,) = settings.model_fallbacks.values()
    assert set(settings.model_fallbacks) == {config()["VLLM_MODEL_NAME"]}
    assert targets == (
        f"ollama/{config()['INFERENCE_OLLAMA_MODEL']}",
        f"openai/{config()['INFERENCE_OPENAI_MODEL']}",
    )
    gateway = GatewaySettings.from_env(env)
    assert (gateway.host, gateway.port, gateway.workers) == ("0.0.0.0", 8080, 2)
    pod = named("Deployment", "inference-gateway")["spec"]["template"]["spec"]
    pre_stop = gateway_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # the drain finishes before the kubelet kills the pod
    assert gateway.drain_timeout + float(pre_stop[1]) < pod["terminationGracePeriodSeconds"]


async def test_the_gateway_as_configured_answers_probes_and_keys_through_redis(
    redis_as_deployed: tuple[int, str],
) -> None:
    """The real gateway app, configured from the ConfigMap and the example Secret, its Redis
    the real one started with the manifest's arguments (only the Service's host swapped for
    this machine's address): the probes answer with no key, a request without a key is 401,
    one with the Secret's key passes the key store and limits in Redis and reaches the router."""
    from inference_core.gateway import GatewaySettings, create_app
    from inference_core.router import Router
    from inference_core.state import StateSettings

    port, password = redis_as_deployed
    env = gateway_env()
    url = urlsplit(env["INFERENCE_REDIS_URL"])
    env["INFERENCE_REDIS_URL"] = url._replace(
        netloc=url.netloc.replace(f"@{url.hostname}:{url.port}", f"@127.0.0.1:{port}")
    ).geturl()
    assert env["INFERENCE_REDIS_URL"] != gateway_env()["INFERENCE_REDIS_URL"]
    unreachable = httpx.MockTransport(lambda request: httpx.Response(503))
    router = Router.from_env(env, env_file=None, transport=unreachable)
    app = create_app(
        router, GatewaySettings.from_env(env), state_settings=StateSettings.from_env(env)
    )
    probes = {
        name: gateway_container()[name]["httpGet"]["path"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert set(probes.values()) == {"/health", "/ready"}
    key = env["INFERENCE_GATEWAY_API_KEYS"].split(",")[0]
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c,
    ):
        health = await c.get(probes["livenessProbe"])
        ready = await c.get(probes["readinessProbe"])
        anonymous = await c.post("/v1/chat/completions", json=body)
        keyed = await c.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
    assert health.status_code == 200  # the probes need no key ...
    assert health.json() == {"status": "ok"}
    assert ready.status_code in (200, 503)  # 503 = no backend usable: out of the Service
    assert ready.json()["status"] in ("ready", "unavailable")
    assert anonymous.status_code == 401  # ... the API does
    # the key was accepted (its limits counted in Redis); the backends here answer 503
    assert keyed.status_code == 503, keyed.text
    assert keyed.json()["error"]["code"] != "state_unavailable"
    stored = redis_keys(port, password, "inference:*")
    assert stored, "the gateway wrote no state to Redis"


def test_the_gateway_runs_what_the_image_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    container = gateway_container()
    assert container["command"] == ["inference", "serve"]
    assert 'CMD ["inference", "serve"' in dockerfile
    uid = named("Deployment", "inference-gateway")["spec"]["template"]["spec"]["securityContext"]
    assert f"--uid {uid['runAsUser']}" in dockerfile
    assert f"--gid {uid['runAsGroup']}" in dockerfile
    image, tag = container["image"].rsplit(":", 1)
    assert f"-t {image}:{tag}" in dockerfile


# ------------------------------------------------------------------------------ security


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (ns,) = of_kind("Namespace")
    assert ns["metadata"]["name"] == kustomization()["namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_pod_meets_restricted_and_has_resources() -> None:
    for w, c in all_containers():
        name = f"{w['metadata']['name']}/{c['name']}"
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host), name
        assert all("hostPath" not in v for v in pod.get("volumes", [])), name
        assert pod.get("automountServiceAccountToken") is False, name
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert not sc.get("privileged"), name
        assert c["resources"]["requests"]["cpu"], name
        assert c["resources"]["requests"]["memory"], name
        assert c["resources"]["limits"]["memory"], name
        image = c["image"]
        assert ":" in image, f"{name}: pin {image}"
        assert not image.endswith(":latest"), f"{name}: pin {image}"
    for name in ("inference-gateway", "redis"):
        for c in named("Deployment", name)["spec"]["template"]["spec"]["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_the_gateway_writes_only_to_its_volumes() -> None:
    container = gateway_container()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert "/tmp" in mounts
    assert any(env["INFERENCE_CACHE_DIR"].startswith(m + "/") for m in mounts)
    assert not any(v.startswith("sk-") for v in config().values())  # no secret in the ConfigMap
    for var in container["env"]:
        if var["name"] in (
            "INFERENCE_GATEWAY_API_KEYS", "OPENAI_API_KEY", "INFERENCE_REDIS_URL",
            "INFERENCE_ADMIN_KEYS",
        ):  # fmt: skip
            assert "secretKeyRef" in var["valueFrom"], var["name"]


# --------------------------------------------------- Redis as the manifest starts it, for real


@pytest.fixture
def redis_as_deployed(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """Debian's redis-server with the Deployment's own arguments (password from the example
    Secret), on a free loopback port, data in ``tmp_path``; yields (port, password)."""
    import shutil
    import subprocess
    import time

    from inference_core.testing import missing_peer, unused_port

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        missing_peer("redis-server is not installed (bash scripts/peers/redis.sh setup)")
    password = example_secret()["REDIS_PASSWORD"]
    container = named("Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("$(REDIS_PASSWORD)", password) for a in container["args"]]
    args[args.index("--dir") + 1] = str(tmp_path)  # the volume
    port = unused_port()
    argv = [*container["command"], *args, "--port", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            ping = subprocess.run(
                ["redis-cli", "-p", str(port), "--no-auth-warning", "-a", password, "ping"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            if ping.stdout.strip() == "PONG":
                break
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)
        yield port, password
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def redis_keys(port: int, password: str, pattern: str) -> list[str]:
    """The keys of the Redis on ``port`` that match ``pattern``."""
    import subprocess

    return subprocess.run(
        ["redis-cli", "--no-auth-warning", "-p", str(port), "-a", password,
         "--scan", "--pattern", pattern],
        capture_output=True, text=True, timeout=10,
    ).stdout.split()  # fmt: skip


def test_redis_runs_as_configured_and_its_probe_tells_ready(
    redis_as_deployed: tuple[int, str],
) -> None:
    import subprocess

    port, password = redis_as_deployed
    container = named("Deployment", "redis")["spec"]["template"]["spec"]["containers"][0]
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"]
    # the container's probe asks the default port; here the server is on ``port``
    script = probe[2].replace("redis-cli", f"redis-cli -p {port}")
    assert script != probe[2]

    def run(env_password: str) -> int:
        env = {"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": env_password}
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=10)
        return done.returncode

    assert run(password) == 0
    assert run("not-the-password") != 0  # the password is required, and the probe says so
    # the password in the gateway's URL (example Secret; its host is the Service) opens it
    url = urlsplit(example_secret()["INFERENCE_REDIS_URL"])
    names = ["appendonly", "maxmemory-policy", "maxmemory"]
    got = subprocess.run(
        ["redis-cli", "--no-auth-warning", "-p", str(port), "-a", url.password or "",
         "-n", url.path.lstrip("/") or "0", "config", "get", *names],
        capture_output=True, text=True, timeout=10,
    ).stdout.splitlines()  # fmt: skip
    config = dict(zip(got[::2], got[1::2], strict=True))
    assert config["appendonly"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    assert int(config["maxmemory"]) == 384 * 1024 * 1024
