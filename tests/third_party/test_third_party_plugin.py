"""An out-of-tree plugin, installed from a wheel into a clean venv, is found by its entry point.

Builds wheels of inference-switchboard (the core) and of ``inference-echo`` (the CONTRIBUTING.md
example), creates a fresh virtual environment, and shows, with that venv's own interpreter and
console script:

* the core alone imports, and ``inference plugins`` says no backend is installed (with a
  hint);
* with inference-echo installed, ``FALLBACK_CHAIN=echo`` behind a primary that is down (a real
  connection refused) routes to it, and ``inference plugins`` lists it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ECHO = Path(__file__).resolve().parent / "inference-echo"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any inference variable, plus ``extra``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INFERENCE_", "OPENAI_", "LOCAL_", "VLLM_", "ENABLE_FALLBACK"))
        and k not in ("FALLBACK_CHAIN", "HEALTH_CHECK_INTERVAL", "HEALTH_CHECK_TIMEOUT")
        and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    keep.update(extra)
    return keep


def build_wheel(project: Path, out: Path, dist: str) -> Path:
    args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(project)]
    if importlib.util.find_spec("hatchling") is not None:
        args.insert(4, "--no-build-isolation")  # the dev venv's hatchling, no download
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(out.glob(f"{dist.replace('-', '_')}-*.whl"))
    assert wheels, f"no wheel for {project} in {out}"
    return wheels[-1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with the inference-switchboard wheel (dependencies from the package index)."""
    tmp = tmp_path_factory.mktemp("third_party")
    wheels = tmp / "wheels"
    core = build_wheel(ROOT / "core", wheels, "inference-switchboard")
    echo = build_wheel(ECHO, wheels, "inference-echo")
    env_dir = tmp / "venv"
    proc = subprocess.run(
        [sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    python = env_dir / "bin" / "python"
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(core)],
        capture_output=True,
        text=True,
        timeout=900,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"python": python, "bin": env_dir / "bin", "echo_wheel": echo, "cwd": tmp}


def run(venv, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(**env),
        cwd=venv["cwd"],  # no stray .env file
    )


def test_core_alone_imports_and_says_no_backend_is_installed(venv):
    run(venv, venv["python"], "-m", "pip", "uninstall", "--yes", "--quiet", "inference-echo")
    proc = run(
        venv,
        venv["python"],
        "-c",
        "import inference_core, sys; print(inference_core.__version__, "
        "inference_core.__file__.startswith(sys.prefix))",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0.1.0", "True"]  # the wheel in the venv, not the checkout
    proc = run(venv, venv["bin"] / "inference", "plugins")
    assert proc.returncode == 0, proc.stderr
    assert "No backend plugin is installed" in proc.stdout
    assert "pip install inference-vllm" in proc.stdout
    # and asking for a backend that is not there is a configuration error naming it
    proc = run(venv, venv["bin"] / "inference", "health", INFERENCE_PROVIDER="echo")
    assert proc.returncode == 2
    assert "'echo'" in proc.stderr
    assert "Traceback" not in proc.stderr


ROUTE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, socket
    import inference_core
    from inference_core import Router
    from inference_core.http import openai_compat

    # a primary that is really down: an OpenAI-compatible backend on a port nobody listens on
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()

    class Primary:
        @inference_core.hookimpl
        async def chat(self, request, config, http):
            return await openai_compat.chat(http, config, request)

        @inference_core.hookimpl
        async def health(self, config, http):
            return await openai_compat.probe_health(http, config)

    async def main():
        router = Router.from_env(extra_plugins={"primary": Primary()}, env_file=None)
        import os
        assert router.settings.chain == ["primary", "echo"], router.settings.chain
        async with router:
            from inference_core import RequestTrace
            trace = RequestTrace()
            reply = await router.chat(
                {"messages": [{"role": "user", "content": "hello from the venv"}]}, trace=trace
            )
            print(json.dumps({
                "content": reply.choices[0].message.content,
                "backend": trace.backend,
                "attempts": [[a.backend, a.kind] for a in trace.attempts],
                "echo_module": __import__("inference_echo").__file__,
            }))

    import os
    os.environ["INFERENCE_PRIMARY_BASE_URL"] = f"http://127.0.0.1:{port}"
    asyncio.run(main())
    """
)


def test_fallback_chain_routes_to_the_installed_plugin(venv):
    proc = run(venv, venv["python"], "-m", "pip", "install", "--quiet", str(venv["echo_wheel"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(
        venv,
        venv["python"],
        "-c",
        ROUTE_SCRIPT,
        INFERENCE_PROVIDER="primary",
        ENABLE_FALLBACK="true",
        FALLBACK_CHAIN="echo",
        INFERENCE_MAX_RETRIES="0",
        INFERENCE_RETRY_BACKOFF="0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["content"] == "hello from the venv"
    assert result["backend"] == "echo"
    assert result["attempts"][0] == ["primary", "unavailable"]
    assert str(venv["cwd"]) in result["echo_module"]  # imported from the venv, not the checkout

    proc = run(venv, venv["bin"] / "inference", "plugins", "--json", INFERENCE_PROVIDER="echo")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [(p["name"], p["distribution"], p["error"], p["in_chain"]) for p in listed] == [
        ("echo", "inference-echo", None, True)
    ]
    proc = run(venv, venv["bin"] / "inference", "plugins")
    assert "echo" in proc.stdout
    assert "inference-echo" in proc.stdout

    proc = run(venv, venv["bin"] / "inference", "chat", "ping pong", INFERENCE_PROVIDER="echo")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ping pong"
