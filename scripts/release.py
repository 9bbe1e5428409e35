#!/usr/bin/env python3
"""Build and check the repository's distributions for a release (the release workflow runs this).

    python scripts/release.py [--tag TAG] [--out DIR] [--no-isolation]

Finds every distribution (``core/`` and each ``plugins/*/`` with a ``pyproject.toml``), builds an
sdist and a wheel of each with ``python -m build``, checks that each produced exactly those two
files under its own name and version, and runs ``twine check --strict`` on all of them.

A distribution's version lives in one place: ``__version__`` in its package, which hatchling reads
(``[tool.hatch.version]``). ``--tag`` selects and verifies:

* ``v1.2.3``: every distribution, each of which must be at 1.2.3;
* ``inference-vllm-v1.2.3``: that distribution only, which must be at 1.2.3.

A tag that names no distribution, or a version that differs from the tag, stops the release with
exit code 1 before anything is built. Needs ``build`` and ``twine`` (pip install build twine).
Prints one line per built file and, last, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION_LINE = re.compile(r'^__version__\s*=\s*["\']([^"\']+)["\']', re.M)


@dataclass(frozen=True)
class Dist:
    """One distribution of the repository: its directory, name and (single-sourced) version."""

    path: Path
    name: str
    version: str

    @property
    def stem(self) -> str:
        """The file-name form of the name (PEP 427 / 625): lower case, runs of -_. as one _."""
        return re.sub(r"[-_.]+", "_", self.name).lower()


def discover(root: Path = ROOT) -> list[Dist]:
    """Every distribution under ``root``: core first, then the plugins by name."""
    dirs = [root / "core", *sorted(p.parent for p in (root / "plugins").glob("*/pyproject.toml"))]
    out = []
    for d in dirs:
        meta = tomllib.loads((d / "pyproject.toml").read_text())
        project = meta["project"]
        if "version" in project:
            raise SystemExit(f"{d}/pyproject.toml: a static version; use __version__ (dynamic)")
        source = d / meta["tool"]["hatch"]["version"]["path"]
        found = VERSION_LINE.search(source.read_text())
        if not found:
            raise SystemExit(f"{source}: no __version__ line")
        out.append(Dist(d, project["name"], found.group(1)))
    return out


def select(dists: list[Dist], tag: str | None) -> list[Dist]:
    """The distributions a tag releases, each checked to be at the tag's version."""
    if not tag:
        return dists
    m = re.fullmatch(r"(?:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)-)?v(?P<version>\d[\w.+!-]*)", tag)
    if not m:
        raise SystemExit(f"tag {tag!r}: expected vX.Y.Z or <distribution>-vX.Y.Z")
    name, version = m.group("name"), m.group("version")
    chosen = [d for d in dists if name is None or d.stem == re.sub(r"[-_.]+", "_", name).lower()]
    if not chosen:
        names = ", ".join(d.name for d in dists)
        raise SystemExit(f"tag {tag!r} names no distribution of this repository ({names})")
    wrong = [f"{d.name} is at {d.version}" for d in chosen if d.version != version]
    if wrong:
        raise SystemExit(f"tag {tag!r} wants version {version}, but " + "; ".join(wrong))
    return chosen


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode()


def build(dists: list[Dist], out: Path, isolation: bool = True) -> list[Path]:
    """Build an sdist and a wheel of each distribution into ``out``; check names and versions."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for d in dists:
        before = set(out.iterdir())
        cmd = [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
            str(d.path),
        ]
        if not isolation:
            cmd.insert(3, "--no-isolation")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"building {d.name} failed")
        new = sorted(set(out.iterdir()) - before)
        sdist = [p for p in new if p.name == f"{d.stem}-{d.version}.tar.gz"]
        wheel = [p for p in new if p.name == f"{d.stem}-{d.version}-py3-none-any.whl"]
        if len(new) != 2 or not sdist or not wheel:
            raise SystemExit(f"{d.name}: expected its sdist and wheel at {d.version}, got {new}")
        meta = wheel_metadata(wheel[0])
        if f"\nName: {d.name}\n" not in meta or f"\nVersion: {d.version}\n" not in meta:
            raise SystemExit(f"{wheel[0].name}: metadata does not say {d.name} {d.version}")
        files += [sdist[0], wheel[0]]
        for f in (sdist[0], wheel[0]):
            print(f)
    return files


def twine_check(files: list[Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit("twine check failed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", help="release tag: vX.Y.Z (all) or <distribution>-vX.Y.Z (one)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (dist/)")
    ap.add_argument(
        "--no-isolation",
        action="store_true",
        help="build with the current environment's hatchling (tests); CI builds isolated",
    )
    a = ap.parse_args(argv)
    chosen = select(discover(), a.tag)
    files = build(chosen, a.out, isolation=not a.no_isolation)
    twine_check(files)
    summary = {
        "distributions": {d.name: d.version for d in chosen},
        "files": [f.name for f in files],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
