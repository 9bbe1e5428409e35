"""Each backend plugin installs and works ALONE: the core plus that one plugin, nothing else.

For each of the five plugins, a fresh virtual environment (``python -m venv`` in ``tmp_path``)
gets the wheels of ``inference-switchboard`` and of that plugin only, and its own interpreter and
console script show:

* ``inference plugins --json`` lists exactly that backend (its distribution, no load error);
* ``import inference_<name>`` works, from the venv (not the checkout);
* the four other plugin packages are NOT importable;
* ``inference chat "hi" --max-tokens 4 --no-stream`` answers through the installed backend,
  talking to a fake server this test process runs (``tests/fakes``; for llama.cpp the external
  stand-in ``plugins/inference-llamacpp/tests/fake_llama_server.py``, or the real peer when
  ``INFERENCE_TEST_LLAMACPP_URL`` is set), which records what the plugin sent.

Speed: the six wheels are built once (``pip wheel --no-deps``) and the dependencies downloaded
once (``pip download``, from the normal index or pip's cache) into one module-scoped wheelhouse;
each venv is created ``--without-pip`` and filled by the dev venv's pip (``pip --python``) with
``--no-index --find-links``, so a venv costs ~3 s instead of ~9 s.  Timings are printed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from inference_core.testing.local import unused_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("openai", "vllm", "ollama", "llamacpp", "textgen")
FAKE_LLAMA = ROOT / "plugins" / "inference-llamacpp" / "tests" / "fake_llama_server.py"
LLAMA_CHAT = ROOT / "plugins" / "inference-llamacpp" / "tests" / "data" / "chat.json"
REPLY = "alpha beta gamma delta epsilon zeta"  # the fakes' answer; max_tokens=4 keeps 4 words
TIMINGS: dict[str, float] = {}


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any inference / seed variable or virtualenv hint, plus ``extra``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INFERENCE_", "OPENAI_", "LOCAL_", "VLLM_", "ENABLE_FALLBACK"))
        and k not in ("FALLBACK_CHAIN", "HEALTH_CHECK_INTERVAL", "HEALTH_CHECK_TIMEOUT")
        and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    keep.update(extra)
    return keep


def pip(*args: str | Path, timeout: float = 600) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> dict[str, Path]:
    """Wheels of core and the five plugins, plus every dependency of core, in two directories."""
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("each_plugin")
    wheels, deps = tmp / "wheels", tmp / "deps"
    projects = [ROOT / "core", *(ROOT / "plugins" / f"inference-{n}" for n in PLUGINS)]
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    pip("wheel", "--no-deps", *isolation, "-q", "-w", wheels, *projects)
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert [n.split("-")[0] for n in names] == sorted(
        ["inference_switchboard", *(f"inference_{n}" for n in PLUGINS)]
    ), names
    core = next(wheels.glob("inference_switchboard-*.whl"))
    pip("download", "-q", "-d", deps, core)  # core's dependencies, from the index or pip's cache
    TIMINGS["wheelhouse"] = time.monotonic() - t0
    return {"wheels": wheels, "deps": deps, "root": tmp}


def run(
    cwd: Path, *args: str | Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**env),
        cwd=cwd,  # no stray .env file, no checkout on sys.path
    )


def make_venv(wheelhouse: dict[str, Path], name: str, where: Path) -> Path:
    """A fresh venv holding inference-switchboard and inference-<name> (and their deps) only."""
    env_dir = where / f"venv-{name}"
    proc = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pip(
        "--python",
        env_dir / "bin" / "python",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        wheelhouse["wheels"],
        "--find-links",
        wheelhouse["deps"],
        "inference-switchboard",
        f"inference-{name}",
    )
    return env_dir


# ------------------------------------------------------------------ one real call per backend


def start_fake_llama() -> tuple[str, subprocess.Popen[bytes] | None]:
    """The real peer when INFERENCE_TEST_LLAMACPP_URL is set, else the external stand-in."""
    real = os.environ.get("INFERENCE_TEST_LLAMACPP_URL", "").strip().rstrip("/")
    if real:
        return real, None
    port = unused_port()
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_LLAMA), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(FAKE_LOADING_SECONDS="0"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url + "/health", timeout=1.0, trust_env=False).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "fake llama-server exited"
        assert time.monotonic() < deadline, "fake llama-server did not come up"
        time.sleep(0.05)


def chat_through(name: str, venv: Path, cwd: Path) -> tuple[subprocess.CompletedProcess, object]:
    """Run ``inference chat "hi" --max-tokens 4 --no-stream`` in the venv against a fake.

    Returns the process and what the fake recorded (a list of requests, or None when the
    backend cannot record: llama.cpp).
    """
    from tests.fakes import FakeOllamaServer, FakeOpenAIServer, FakeTextgenServer

    cli = (venv / "bin" / "inference", "chat", "hi", "--max-tokens", "4", "--no-stream")
    if name == "llamacpp":
        url, proc = start_fake_llama()
        try:
            return run(cwd, *cli, INFERENCE_PROVIDER=name, INFERENCE_LLAMACPP_BASE_URL=url), None
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    if name == "ollama":
        with FakeOllamaServer(reply=REPLY) as srv:
            done = run(
                cwd,
                *cli,
                INFERENCE_PROVIDER=name,
                INFERENCE_OLLAMA_BASE_URL=srv.url,
                INFERENCE_OLLAMA_MODEL="llama3.2:1b",
            )
            return done, list(srv.requests)
    if name == "textgen":
        with FakeTextgenServer(reply=REPLY) as srv:
            done = run(cwd, *cli, INFERENCE_PROVIDER=name, INFERENCE_TEXTGEN_BASE_URL=srv.url)
            return done, list(srv.requests)
    key = "sk-each-plugin-alone"
    with FakeOpenAIServer(reply=REPLY, api_key=key) as srv:
        env = {"INFERENCE_PROVIDER": name}
        if name == "openai":  # the OpenAI base URL includes /v1; the bearer key is enforced
            env.update(
                INFERENCE_OPENAI_BASE_URL=srv.base_url,
                INFERENCE_OPENAI_API_KEY=key,
                INFERENCE_OPENAI_MODEL="gpt-4o-mini",
            )
        else:
            env.update(INFERENCE_VLLM_BASE_URL=srv.url, INFERENCE_VLLM_API_KEY=key)
        done = run(cwd, *cli, **env)
        return done, list(srv.requests)


def chat_request(name: str, requests: list) -> dict:
    """The one chat request the fake received, checked for the prompt and the token limit."""
    path = "/api/chat" if name == "ollama" else "/v1/chat/completions"
    posted = [r for r in requests if r.method == "POST" and r.path == path]
    assert len(posted) == 1, [(r.method, r.path) for r in requests]
    body = posted[0].json
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    if name == "ollama":
        assert body["options"]["num_predict"] == 4
        assert body["model"] == "llama3.2:1b"
    else:
        assert body["max_tokens"] == 4
    return body


# ---------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_alone_in_a_fresh_venv(name, wheelhouse, tmp_path):
    t0 = time.monotonic()
    venv = make_venv(wheelhouse, name, tmp_path)
    t_install = time.monotonic() - t0
    python, inference = venv / "bin" / "python", venv / "bin" / "inference"
    assert inference.is_file(), "the console script was not installed"

    # exactly this backend is installed, and it loads
    proc = run(tmp_path, inference, "plugins", "--json", INFERENCE_PROVIDER=name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = [
        (p["name"], p["distribution"], p["error"], p["in_chain"]) for p in json.loads(proc.stdout)
    ]
    assert listed == [(name, f"inference-{name}", None, True)]
    text = run(tmp_path, inference, "plugins", INFERENCE_PROVIDER=name)
    assert text.returncode == 0, text.stderr
    assert f"inference-{name}" in text.stdout
    assert not any(f"inference-{o}" in text.stdout for o in PLUGINS if o != name), text.stdout

    # its package imports from the venv; the other four are not there at all
    others = [o for o in PLUGINS if o != name]
    probe = (
        "import importlib, importlib.util, json, sys\n"
        f"mod = importlib.import_module('inference_{name}')\n"
        "print(json.dumps({'file': mod.__file__, 'prefix': sys.prefix, 'others': {o: "
        "importlib.util.find_spec('inference_' + o) is not None for o in "
        f"{others!r}}}}}))"
    )
    proc = run(tmp_path, python, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["prefix"] == str(venv)
    assert found["file"].startswith(str(venv)), found["file"]  # the wheel, not the checkout
    assert found["others"] == dict.fromkeys(others, False)
    for other in others:  # and importing one really fails
        proc = run(tmp_path, python, "-c", f"import inference_{other}")
        assert proc.returncode == 1
        assert f"No module named 'inference_{other}'" in proc.stderr

    # one real call through the installed backend
    t1 = time.monotonic()
    done, requests = chat_through(name, venv, tmp_path)
    t_call = time.monotonic() - t1
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"served by {name} (" in done.stderr, done.stderr
    answer = done.stdout.strip()
    if name == "llamacpp":
        if os.environ.get("INFERENCE_TEST_LLAMACPP_URL", "").strip():
            assert answer  # the real model: some text
        else:
            expected = json.loads(LLAMA_CHAT.read_text())["choices"][0]["message"]["content"]
            assert answer == expected.strip()
    else:
        assert answer == "alpha beta gamma delta"  # the fake's reply, cut at max_tokens=4
        chat_request(name, requests)
    TIMINGS[name] = time.monotonic() - t0
    print(
        f"\n[each-plugin-alone] {name}: venv+install {t_install:.1f}s, chat {t_call:.1f}s, "
        f"total {TIMINGS[name]:.1f}s (wheelhouse, once: {TIMINGS.get('wheelhouse', 0):.1f}s)"
    )
