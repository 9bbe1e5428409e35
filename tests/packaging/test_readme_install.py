"""The README's install lines, run as written against our packages on an index, with PyPI reachable.

Every distribution of the repository is built (sdist + wheel) into a PEP 503 "simple" package
index that this test serves over HTTP on loopback: it stands in for our releases on PyPI. A clean
venv then runs, exactly as the README writes them:

0. ``pip install inference-vllm`` alone, as a dry run: it must bring our core;
1. the library line (``pip install inference-switchboard inference-vllm``), first as a dry run
   (``PIP_DRY_RUN``: resolution only, cheap) and then for real;
2. the gateway line (``pip install 'inference-switchboard[gateway]' inference-vllm``);

each with pip's own configuration files switched off, PyPI as the index (pip's default) and ours as
the extra index, so both are searched and pip takes the best candidate from either, as it would
for a user whose index mirrors PyPI. pip's installation report (``PIP_REPORT``) then proves that
no package of another project was picked: every distribution we build that pip installed is byte
for byte our file (its sha256 is that of the file we built, fetched from our index), neither
``inference-core`` (Roboflow's, on PyPI) nor anything else it would bring is installed, and every
installed package is required by ours. Last, the README's library example runs in that venv
against a fake vLLM server (``tests/fakes``) and prints the fake's answer, twice (JSON, stream).

Fails on a tree whose plugins require ``inference-core``: pip takes PyPI's 1.8.3 over our 0.1.0.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FOREIGN = {"inference-core", "inference", "inference-cli", "inference-sdk"}  # Roboflow's
REPLY = "alpha beta gamma delta epsilon zeta"  # what the fake answers


# ------------------------------------------------------------------------------- the README


def readme_blocks() -> list[tuple[str, str]]:
    """Every fenced code block of the README as (language, text)."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", README.read_text(), flags=re.M | re.S)


def readme_install_line(extra: str | None) -> str:
    """The README's one ``pip install`` line for the core (with ``[extra]``, or without)."""
    lines = [
        line.strip()
        for lang, text in readme_blocks()
        if lang == "bash"
        for line in text.splitlines()
        if line.strip().startswith("pip install ")
    ]
    want = [
        line
        for line in lines
        if (f"[{extra}]" in line if extra else "[" not in line) and "inference-vllm" in line
    ]
    assert len(want) == 1, f"README install lines for extra={extra}: {lines}"
    return want[0]


def readme_library_example() -> str:
    """The README's library example: the python block right after the library install line."""
    blocks = readme_blocks()
    for i, (lang, text) in enumerate(blocks):
        if lang == "bash" and readme_install_line(None) in text:
            nxt = blocks[i + 1]
            assert nxt[0] == "python", nxt
            return nxt[1]
    raise AssertionError("no library example after the install line")


# --------------------------------------------------------------------- our package index


def build_all(out: Path) -> dict[str, Path]:
    """sdist + wheel of core and every plugin; {file name: path}."""
    projects = [
        ROOT / "core",
        *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml")),
    ]
    cmd = [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-isolation")  # the dev venv's hatchling, no download
    for project in projects:
        proc = subprocess.run([*cmd, str(project)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = {p.name: p for p in out.iterdir()}
    assert len(files) == 2 * len(projects), sorted(files)
    return files


def project_of(filename: str) -> str:
    """The canonical project name of a wheel or sdist file name."""
    return canonicalize_name(filename.split("-")[0])


def write_simple_index(files: dict[str, Path], root: Path) -> dict[str, str]:
    """A PEP 503 index of ``files`` under ``root/simple``; returns {file name: sha256}."""
    digests = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}
    projects: dict[str, list[str]] = {}
    for name in files:
        projects.setdefault(project_of(name), []).append(name)
    (root / "files").mkdir(parents=True)
    for name, path in files.items():
        (root / "files" / name).write_bytes(path.read_bytes())
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (root / "simple").mkdir()
    (root / "simple" / "index.html").write_text(
        f"<!DOCTYPE html><html><body>\n{links}</body></html>"
    )
    for project, names in projects.items():
        anchors = "".join(
            f'<a href="../../files/{n}#sha256={digests[n]}" '
            f'data-requires-python="{html.escape(">=3.11")}">{n}</a>\n'
            for n in sorted(names)
        )
        (root / "simple" / project).mkdir()
        (root / "simple" / project / "index.html").write_text(
            f"<!DOCTYPE html><html><body>\n{anchors}</body></html>"
        )
    return digests


class QuietHandler(SimpleHTTPRequestHandler):
    served: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.served.append(self.path)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """Our distributions on a package index at http://127.0.0.1:PORT/simple/ (this process)."""
    tmp = tmp_path_factory.mktemp("index")
    files = build_all(tmp / "dist")
    digests = write_simple_index(files, tmp / "www")
    served: list[str] = []
    handler = type("Handler", (QuietHandler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(tmp / "www")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{server.server_address[1]}/simple/",
            "digests": digests,
            "ours": {project_of(n) for n in files},
            "served": served,
            "tmp": tmp,
        }
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------- the venv


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """No pip configuration but the machine's CA bundle; no inference variables; venv first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "INFERENCE_", "OPENAI_", "LOCAL_", "VLLM_", "PYTHON"))
        and k not in ("VIRTUAL_ENV", "FALLBACK_CHAIN", "ENABLE_FALLBACK")
    }
    for keep in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # no machine-wide find-links or mirrors: PyPI is the index
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def run_readme_line(line: str, venv: Path, index: dict, report: Path, **extra: str) -> dict:
    """Run ``line`` through the shell, exactly as written, in the venv; return pip's report."""
    env = clean_env(venv, PIP_EXTRA_INDEX_URL=index["url"], PIP_REPORT=str(report), **extra)
    proc = subprocess.run(
        ["sh", "-c", line], env=env, cwd=index["tmp"], capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(report.read_text())


def requested_by(line: str) -> dict[str, set[str]]:
    """{canonical name: extras} of the requirements a ``pip install`` line names."""
    reqs = [Requirement(t.strip("'\"")) for t in line.split()[2:] if not t.startswith("-")]
    return {canonicalize_name(r.name): set(r.extras) for r in reqs}


def check_provenance(
    report: dict, index: dict, line: str, known: dict[str, dict]
) -> dict[str, str]:
    """Nothing another project owns was picked: see the module docstring. {name: url}.

    ``known`` collects the metadata of everything installed so far (a later line's report lists
    only what it added), to follow requirements through packages installed before.
    """
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    known.update({name: i["metadata"] for name, i in items.items()})
    picked = {name: i["download_info"]["url"] for name, i in items.items()}
    assert not FOREIGN & set(picked), f"another project's package was picked: {picked}"
    requested = requested_by(line)
    assert set(requested) <= index["ours"], (line, index["ours"])  # the README names only ours
    for name, item in items.items():
        if name not in index["ours"]:
            continue
        url = item["download_info"]["url"]
        assert url.startswith(index["url"].removesuffix("simple/")), (name, url)
        filename = url.rsplit("/", 1)[-1]
        sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
        assert sha == index["digests"][filename], f"{name}: not the file we built ({url})"
    # every installed package is required, directly or not, by what the line asked for
    env = default_environment()
    needed: set[str] = set()
    todo = list(requested.items())
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        needed.add(name)
        for raw in (known.get(name) or {}).get("requires_dist") or []:
            req = Requirement(raw)
            if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})
            ):
                continue
            todo.append((canonicalize_name(req.name), set(req.extras)))
    assert set(items) <= needed, f"installed but required by none of ours: {set(items) - needed}"
    return picked


@pytest.fixture(scope="module")
def venv(index) -> Path:
    path = index["tmp"] / "venv"
    proc = subprocess.run([sys.executable, "-m", "venv", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return path


def test_readme_install_lines_pick_only_our_packages_then_the_example_runs(venv, index) -> None:
    from tests.fakes import FakeOpenAIServer

    library = readme_install_line(None)
    gateway = readme_install_line("gateway")
    assert set(requested_by(library)) == {"inference-switchboard", "inference-vllm"}, library

    # 0. a plugin alone brings our core (resolution only)
    alone = "pip install inference-vllm"
    plan = run_readme_line(alone, venv, index, index["tmp"] / "alone.json", PIP_DRY_RUN="1")
    assert "inference-switchboard" in check_provenance(plan, index, alone, {})
    # 1. resolution alone (no download of what it picks): cheap, and the first thing to fail
    plan = run_readme_line(library, venv, index, index["tmp"] / "plan.json", PIP_DRY_RUN="1")
    check_provenance(plan, index, library, {})
    # 2. the real install, and 3. the gateway extra on top
    known: dict[str, dict] = {}
    report = run_readme_line(library, venv, index, index["tmp"] / "library.json")
    picked = check_provenance(report, index, library, known)
    assert {"inference-switchboard", "inference-vllm"} <= set(picked)
    assert any(u.startswith("https://") for u in picked.values()), "PyPI was not used at all"
    report = run_readme_line(gateway, venv, index, index["tmp"] / "gateway.json")
    assert "fastapi" in check_provenance(report, index, gateway, known)
    assert index["served"], "our index was never asked"

    py = venv / "bin" / "python"
    probe = subprocess.run(
        [py, "-c", "import importlib.metadata as m, inference_core, inference_core.gateway; "
         "print(m.version('inference-switchboard'), inference_core.__file__); "
         "print(sorted(d.metadata['Name'] for d in m.distributions()))"],
        env=clean_env(venv), cwd=index["tmp"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    first, names = probe.stdout.splitlines()
    assert first.split()[1].startswith(str(venv)), first  # the installed copy, not the checkout
    assert not FOREIGN & {canonicalize_name(n) for n in json.loads(names.replace("'", '"'))}

    # 4. the README's library example, against a fake vLLM server
    script = index["tmp"] / "example.py"
    script.write_text(readme_library_example())
    with FakeOpenAIServer(reply=REPLY) as fake:
        done = subprocess.run(
            [py, str(script)],
            env=clean_env(venv, INFERENCE_PROVIDER="vllm", INFERENCE_VLLM_BASE_URL=fake.url),
            cwd=index["tmp"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        posted = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [REPLY, REPLY], done.stdout
    assert [r.json.get("stream", False) for r in posted] == [False, True]
