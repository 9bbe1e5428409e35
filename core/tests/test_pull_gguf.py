"""`inference pull --backend llamacpp`: GGUF downloads from a local HTTP server, and local copies.

The server serves a few MB of random bytes behind the GGUF magic, honours Range requests (or not),
and can cut the connection part-way, answer 404, or serve an HTML page instead of the file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import random
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from inference_core.ops import pull
from inference_core.testing import dead_url, serve_http

CONTENT = b"GGUF" + random.Random(7).randbytes(3 * 1024 * 1024 + 12345)
SHA = hashlib.sha256(CONTENT).hexdigest()


@dataclass
class Behaviour:
    cut_after: int | None = None  # send this many body bytes, then drop the connection
    ranges: bool = True  # honour Range requests with 206
    bad_range: bool = False  # answer a Range request with 206 for the whole file (wrong offset)
    range_headers: list[str | None] = field(default_factory=list)


class GGUFHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour = Behaviour()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        b = type(self).behaviour
        rng = self.headers.get("Range")
        b.range_headers.append(rng)
        if self.path == "/login.gguf":
            body = b"<!DOCTYPE html><html>sign in</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path != "/models/tiny.Q4_K_M.gguf":
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not found")
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and b.bad_range:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(CONTENT) - 1}/{len(CONTENT)}")
        elif m and b.ranges:
            start = int(m.group(1))
            if start >= len(CONTENT):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(CONTENT)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        else:
            self.send_response(200)
        body = CONTENT[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if b.cut_after is not None:
            self.wfile.write(body[: b.cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the cut connections are on purpose


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    GGUFHandler.behaviour = behaviour
    with serve_http(GGUFHandler, server_class=QuietServer) as url:
        yield url, behaviour


def run(source: str, dest: Path, **kw) -> tuple[int, str]:
    buf = io.StringIO()
    code = pull.pull_command(
        source, "llamacpp", dest=dest, console=Console(file=buf, width=200),
        env=kw.pop("env", {}), **kw,
    )  # fmt: skip
    return code, buf.getvalue()


def url(base: str) -> str:
    return f"{base}/models/tiny.Q4_K_M.gguf"


def test_download_verifies_size_and_sha256(server, tmp_path: Path) -> None:
    base, b = server
    code, out = run(url(base), tmp_path, sha256=SHA.upper())
    assert code == pull.EXIT_OK, out
    final = tmp_path / "tiny.Q4_K_M.gguf"
    assert final.read_bytes() == CONTENT
    assert not (tmp_path / "tiny.Q4_K_M.gguf.part").exists()
    assert SHA in out
    assert b.range_headers == [None]


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path: Path) -> None:
    base, b = server
    b.cut_after = 1_000_000
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_INTERRUPTED
    part = tmp_path / "tiny.Q4_K_M.gguf.part"
    assert part.exists()
    kept = part.stat().st_size
    assert 0 < kept <= 1_000_000
    assert "run the same command again to resume" in out
    assert str(part) in out.replace("\n", "")
    assert not (tmp_path / "tiny.Q4_K_M.gguf").exists()

    b.cut_after = None
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_OK, out
    assert b.range_headers[-1] == f"bytes={kept}-"
    assert "resuming" in out
    assert (tmp_path / "tiny.Q4_K_M.gguf").read_bytes() == CONTENT  # sha covers both halves


def test_server_without_range_support_restarts_from_zero(server, tmp_path: Path) -> None:
    base, b = server
    (tmp_path / "tiny.Q4_K_M.gguf.part").write_bytes(CONTENT[:5000])
    b.ranges = False
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_OK, out
    assert "starting over" in out
    assert (tmp_path / "tiny.Q4_K_M.gguf").read_bytes() == CONTENT


def test_complete_part_file_is_finished_on_416(server, tmp_path: Path) -> None:
    base, _ = server
    (tmp_path / "tiny.Q4_K_M.gguf.part").write_bytes(CONTENT)
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_OK, out
    assert (tmp_path / "tiny.Q4_K_M.gguf").read_bytes() == CONTENT


def test_sha_mismatch_removes_the_download(server, tmp_path: Path) -> None:
    base, _ = server
    code, out = run(url(base), tmp_path, sha256="0" * 64)
    assert code == pull.EXIT_CHECKSUM
    assert "sha256 mismatch" in out
    assert SHA in out
    assert list(tmp_path.iterdir()) == []


def test_404_is_not_found(server, tmp_path: Path) -> None:
    base, _ = server
    code, out = run(f"{base}/models/missing.gguf", tmp_path)
    assert code == pull.EXIT_NOT_FOUND
    assert "404" in out
    assert list(tmp_path.iterdir()) == []


def test_html_instead_of_gguf_is_rejected(server, tmp_path: Path) -> None:
    base, _ = server
    code, out = run(f"{base}/login.gguf", tmp_path)
    assert code == pull.EXIT_CHECKSUM
    assert "not a GGUF file" in out
    assert list(tmp_path.iterdir()) == []


def test_not_enough_free_space_fails_before_writing(server, tmp_path, monkeypatch) -> None:
    base, _ = server
    monkeypatch.setattr(pull, "free_bytes", lambda path: 1024 * 1024)
    code, out = run(url(base), tmp_path)
    assert code == pull.EXIT_NO_SPACE
    assert "not enough disk space" in out
    assert "--dest" in out
    assert list(tmp_path.iterdir()) == []


def test_enospc_while_writing_keeps_the_part_and_says_resume(tmp_path: Path) -> None:
    part = tmp_path / "x.gguf.part"
    part.write_bytes(b"GGUF1234")
    err = pull._write_error(OSError(errno.ENOSPC, "No space left on device"), part)
    assert err.code == pull.EXIT_NO_SPACE
    assert "run the same command again" in err.message
    assert part.exists()


def test_existing_file_is_verified_not_downloaded(server, tmp_path: Path) -> None:
    base, b = server
    (tmp_path / "tiny.Q4_K_M.gguf").write_bytes(CONTENT)
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_OK
    assert "already there" in out
    assert b.range_headers == []  # no request at all


def test_filename_option_names_the_file(server, tmp_path: Path) -> None:
    base, _ = server
    code, _out = run(url(base), tmp_path, filename="model.gguf")
    assert code == pull.EXIT_OK
    assert (tmp_path / "model.gguf").read_bytes() == CONTENT


def test_default_destination_is_the_llamacpp_cache(server, tmp_path: Path) -> None:
    base, _ = server
    buf = io.StringIO()
    code = pull.pull_command(
        url(base), "llamacpp", env={"INFERENCE_CACHE_DIR": str(tmp_path)},
        console=Console(file=buf), quiet=True,
    )  # fmt: skip
    assert code == pull.EXIT_OK, buf.getvalue()
    assert (tmp_path / "models" / "tiny.Q4_K_M.gguf").read_bytes() == CONTENT


def test_local_file_is_copied_and_verified(tmp_path: Path) -> None:
    src = tmp_path / "src" / "local.gguf"
    src.parent.mkdir()
    src.write_bytes(CONTENT)
    dest = tmp_path / "dest"
    code, out = run(str(src), dest, sha256=SHA)
    assert code == pull.EXIT_OK, out
    assert (dest / "local.gguf").read_bytes() == CONTENT
    code, out = run(str(tmp_path / "nope.gguf"), dest)
    assert code == pull.EXIT_NOT_FOUND
    assert "no such file" in out


def test_connection_refused_and_bad_sha_argument(tmp_path: Path) -> None:
    dead = dead_url()
    code, out = run(f"{dead}/m.gguf", tmp_path)
    assert code == pull.EXIT_UNREACHABLE
    assert "cannot reach" in out
    code, out = run(f"{dead}/m.gguf", tmp_path, sha256="xyz")
    assert code == pull.EXIT_USAGE
    assert "64 hex digits" in out


def test_empty_sha_argument_means_no_check(server, tmp_path: Path) -> None:
    """compose passes `--sha256 ${LLAMACPP_MODEL_SHA256:-}`: an empty value must not fail."""
    base, _ = server
    code, out = run(url(base), tmp_path, sha256="")
    assert code == pull.EXIT_OK, out


def test_cli_pull_llamacpp_local_file_with_dest_and_sha(tmp_path: Path) -> None:
    """`inference pull PATH --backend llamacpp --dest DIR --sha256 HEX`, through register()."""
    import typer
    from typer.testing import CliRunner

    from inference_core.ops import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app, env={})
    src = tmp_path / "m.gguf"
    src.write_bytes(CONTENT)
    dest = tmp_path / "models"
    runner = CliRunner()
    args = ["pull", str(src), "--backend", "llamacpp", "--dest", str(dest), "--sha256", SHA, "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (dest / "m.gguf").read_bytes() == CONTENT
    result = runner.invoke(app, [*args[:-3], "--filename", "other.gguf", "--sha256", "1" * 64])
    assert result.exit_code == pull.EXIT_CHECKSUM
    assert not (dest / "other.gguf").exists()


def test_disk_filling_up_mid_download_keeps_the_part_and_resumes(
    server, tmp_path: Path, monkeypatch
) -> None:
    """ENOSPC from write() after 1 MB: exit 5, the bytes written so far kept, then a resume."""
    base, b = server
    real_open = Path.open

    class FullDisk:
        def __init__(self, f) -> None:
            self.f, self.room = f, 1_000_000

        def write(self, data: bytes) -> int:
            if len(data) > self.room:
                self.f.write(data[: self.room])
                self.room = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= len(data)
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    def fake_open(self: Path, mode: str = "r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return FullDisk(f) if self.suffix == ".part" and "w" in mode else f

    monkeypatch.setattr(Path, "open", fake_open)
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_NO_SPACE
    assert "disk filled up" in out
    assert "run the same command again" in out
    part = tmp_path / "tiny.Q4_K_M.gguf.part"
    assert part.stat().st_size == 1_000_000
    monkeypatch.setattr(Path, "open", real_open)
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_OK, out
    assert b.range_headers[-1] == "bytes=1000000-"
    assert (tmp_path / "tiny.Q4_K_M.gguf").read_bytes() == CONTENT


def test_a_resume_at_the_wrong_offset_restarts_cleanly(server, tmp_path: Path) -> None:
    base, b = server
    (tmp_path / "tiny.Q4_K_M.gguf.part").write_bytes(CONTENT[:5000])
    b.bad_range = True
    code, out = run(url(base), tmp_path, sha256=SHA)
    assert code == pull.EXIT_OK, out
    assert "wrong offset" in out
    assert b.range_headers == ["bytes=5000-", None]
    assert (tmp_path / "tiny.Q4_K_M.gguf").read_bytes() == CONTENT
