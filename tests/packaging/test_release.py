"""The release: every distribution builds (sdist + wheel), passes twine check, says who it is.

Runs ``scripts/release.py`` (the command ``.github/workflows/release.yml`` runs on a tag) and
checks what it produced: one sdist and one wheel per distribution, named ``inference-switchboard``
for the core (``inference-core`` on PyPI is another project) and ``inference-<backend>`` for each
plugin; each version equal to the ``__version__`` its package carries (the one place it is
written); each plugin requiring the core under its own name, at a range that admits the core's
version; core metadata 2.4 (what the publishing tools accept). Tags that name the wrong version or
no distribution are refused before anything is built. The workflow is held to: built in CI from a
tag, the pinned tools, trusted publishing (OIDC, no token), actions pinned by commit.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "scripts" / "release.py"
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CORE = "inference-switchboard"
PLUGINS = sorted(p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml"))
VERSION = re.compile(r'^__version__\s*=\s*"([^"]+)"', re.M)


def package_version(project: Path) -> str:
    """``__version__`` from the project's package source (not from an installed copy)."""
    inits = list((project / "src").glob("*/__init__.py"))
    assert len(inits) == 1, inits
    found = VERSION.search(inits[0].read_text())
    assert found, inits[0]
    return found.group(1)


def release(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(RELEASE), *args]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-isolation")  # the dev venv's hatchling (CI: the hash-pinned one)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist")
    proc = release("--out", str(out), "--tag", f"v{package_version(ROOT / 'core')}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"out": out, **summary}


def wheel_meta(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


def sdist_meta(sdist: Path):
    with tarfile.open(sdist) as tf:
        member = next(m for m in tf.getmembers() if m.name.count("/") == 1 and
                      m.name.endswith("/PKG-INFO"))  # fmt: skip
        return Parser().parsestr(tf.extractfile(member).read().decode())


def test_every_distribution_builds_an_sdist_and_a_wheel(built) -> None:
    want = {CORE: package_version(ROOT / "core")}
    want |= {p: package_version(ROOT / "plugins" / p) for p in PLUGINS}
    assert built["distributions"] == want
    assert len(want) == 1 + len(PLUGINS) >= 6
    names = sorted(p.name for p in built["out"].iterdir())
    expected = sorted(
        f
        for dist, version in want.items()
        for f in (
            f"{dist.replace('-', '_')}-{version}.tar.gz",
            f"{dist.replace('-', '_')}-{version}-py3-none-any.whl",
        )
    )
    assert names == expected


def test_twine_check_passes_on_every_file(built) -> None:
    files = sorted(built["out"].iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == len(files), proc.stdout


def test_metadata_names_versions_and_the_core_requirement(built) -> None:
    core_version = package_version(ROOT / "core")
    for f in sorted(built["out"].iterdir()):
        meta = wheel_meta(f) if f.suffix == ".whl" else sdist_meta(f)
        assert meta["Metadata-Version"] == "2.4", f.name
        name, version = meta["Name"], meta["Version"]
        requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
        assert not [r for r in requires if r.name == "inference-core"], f.name
        if name == CORE:
            assert version == core_version
            continue
        assert name in PLUGINS, name
        assert version == package_version(ROOT / "plugins" / name)
        core_reqs = [r for r in requires if r.name == CORE and r.marker is None]
        assert len(core_reqs) == 1, (f.name, [str(r) for r in requires])
        assert core_reqs[0].specifier.contains(core_version), (f.name, str(core_reqs[0]))


def test_no_static_version_in_any_pyproject() -> None:
    import tomllib

    for project in [ROOT / "core", *(ROOT / "plugins" / p for p in PLUGINS)]:
        meta = tomllib.loads((project / "pyproject.toml").read_text())
        assert "version" not in meta["project"], project
        assert meta["project"]["dynamic"] == ["version"], project
        assert meta["tool"]["hatch"]["version"]["path"].endswith("__init__.py"), project


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("v99.0.0", "wants version 99.0.0"),
        ("inference-vllm-v99.0.0", "inference-vllm is at"),
        ("inference-nosuch-v0.1.0", "names no distribution"),
        ("release-1", "expected vX.Y.Z"),
    ],
)
def test_a_tag_that_does_not_match_is_refused_before_building(tmp_path, tag, message) -> None:
    out = tmp_path / "dist"
    proc = release("--out", str(out), "--tag", tag)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_one_distribution_tag_builds_only_that_one(tmp_path) -> None:
    version = package_version(ROOT / "plugins" / "inference-vllm")
    proc = release("--out", str(tmp_path), "--tag", f"inference-vllm-v{version}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"inference_vllm-{version}-py3-none-any.whl",
        f"inference_vllm-{version}.tar.gz",
    ]


def test_release_workflow_builds_from_a_tag_and_publishes_with_trusted_publishing() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(on) == {"push"}
    assert on["push"]["tags"]
    assert "branches" not in on["push"]
    assert wf["permissions"] == {}
    build, publish = wf["jobs"]["build"], wf["jobs"]["publish"]
    assert build["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for s in build["steps"]]
    assert any("--require-hashes" in r and "requirements/release.txt" in r for r in runs), runs
    assert any(
        r.startswith("python scripts/release.py") and '--tag "$GITHUB_REF_NAME"' in r for r in runs
    ), runs
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    uses = [s["uses"] for job in (build, publish) for s in job["steps"] if "uses" in s]
    for u in uses:  # every action pinned by a full commit id
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u), u
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses)
    text = WORKFLOW.read_text()
    assert "secrets." not in text  # no stored token: OIDC only
    assert "password" not in text


def test_release_tools_are_pinned_with_hashes() -> None:
    lock = (ROOT / "requirements" / "release.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\$", lock, flags=re.M)
    names = {n.lower() for n, _ in pins}
    assert {"build", "twine", "hatchling"} <= names
    blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", lock[lock.index(pins[0][0] + "==") :])
    assert len(blocks) == len(pins)
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
