"""`inference pull --backend ollama` against a small local server speaking Ollama's /api/pull."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from rich.console import Console

from inference_core.ops import pull
from inference_core.testing import dead_url, serve_http

LAYER = "sha256:6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa"
LAYER_SIZE = 4_920_000


def progress_lines(model: str) -> list[dict]:
    lines: list[dict] = [{"status": "pulling manifest"}]
    for done in (0, 1_000_000, 3_000_000, LAYER_SIZE):
        lines.append(
            {"status": f"pulling {LAYER[7:19]}", "digest": LAYER, "total": LAYER_SIZE,
             "completed": done}
        )  # fmt: skip
    lines += [
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    return lines


class FakeOllama(BaseHTTPRequestHandler):
    """POST /api/pull: behaviour chosen by the model name, like a registry with a few models."""

    protocol_version = "HTTP/1.1"
    requests: list[dict] = []

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, lines: list[dict]) -> None:
        body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        type(self).requests.append({"path": self.path, "body": body})
        if self.path != "/api/pull":
            self._send(404, [{"error": "404 page not found"}])
            return
        model = body.get("model", "")
        if model == "nosuch:model":  # what Ollama streams for a name its registry lacks
            self._send(200, [{"status": "pulling manifest"},
                             {"error": "pull model manifest: file does not exist"}])  # fmt: skip
        elif model == "status404":
            self._send(404, [{"error": f"model '{model}' not found"}])
        elif model == "midway:error":
            self._send(200, [*progress_lines(model)[:3],
                             {"error": "max retries exceeded: unexpected EOF"}])  # fmt: skip
        elif model == "cut:short":
            self._send(200, progress_lines(model)[:4])  # ends without "success"
        else:
            self._send(200, progress_lines(model))


@pytest.fixture
def ollama() -> Iterator[str]:
    FakeOllama.requests = []
    with serve_http(FakeOllama) as url:
        yield url


def run(model: str, base_url: str, **kw) -> tuple[int, str]:
    buf = io.StringIO()
    code = pull.pull_command(
        model, "ollama", base_url=base_url, console=Console(file=buf, width=200), env={}, **kw
    )
    return code, buf.getvalue()


def test_pull_streams_progress_to_success(ollama: str) -> None:
    code, out = run("llama3.1:8b", ollama)
    assert code == pull.EXIT_OK
    assert FakeOllama.requests == [
        {"path": "/api/pull", "body": {"model": "llama3.1:8b", "stream": True}}
    ]
    for status in ("pulling manifest", "verifying sha256 digest", "writing manifest", "success"):
        assert status in out
    assert "pulled llama3.1:8b" in out


def test_error_line_for_unknown_model_is_not_found(ollama: str) -> None:
    code, out = run("nosuch:model", ollama)
    assert code == pull.EXIT_NOT_FOUND
    assert "no model 'nosuch:model'" in out
    assert "file does not exist" in out


def test_http_404_is_not_found(ollama: str) -> None:
    code, out = run("status404", ollama)
    assert code == pull.EXIT_NOT_FOUND
    assert "status404" in out


def test_error_line_mid_pull_is_an_error_with_ollamas_text(ollama: str) -> None:
    code, out = run("midway:error", ollama)
    assert code == pull.EXIT_ERROR
    assert "max retries exceeded" in out


def test_stream_that_ends_without_success_is_interrupted_and_says_how_to_resume(
    ollama: str,
) -> None:
    code, out = run("cut:short", ollama)
    assert code == pull.EXIT_INTERRUPTED
    assert "run the same command again" in out.lower()


def test_connection_refused_is_unreachable_with_a_hint() -> None:
    code, out = run("llama3.1:8b", dead_url())
    assert code == pull.EXIT_UNREACHABLE
    assert "cannot reach Ollama" in out
    assert "INFERENCE_OLLAMA_BASE_URL" in out


def test_base_url_resolution_order() -> None:
    assert pull.ollama_base_url({}) == "http://localhost:11434"
    assert pull.ollama_base_url({"OLLAMA_HOST": "0.0.0.0:11434"}) == "http://localhost:11434"
    env = {"INFERENCE_PROVIDER": "ollama", "LOCAL_INFERENCE_URL": "http://ollama:11434"}
    assert pull.ollama_base_url(env) == "http://ollama:11434"
    # LOCAL_INFERENCE_URL belongs to another backend when the provider is not ollama
    assert pull.ollama_base_url({**env, "INFERENCE_PROVIDER": "vllm"}) == "http://localhost:11434"
    env["INFERENCE_OLLAMA_BASE_URL"] = "http://a:11434, http://b:11434"
    assert pull.ollama_base_url(env) == "http://a:11434"


def test_environment_picks_the_server(ollama: str) -> None:
    buf = io.StringIO()
    code = pull.pull_command(
        "llama3.1:8b", "ollama", env={"INFERENCE_OLLAMA_BASE_URL": ollama},
        console=Console(file=buf), quiet=True,
    )  # fmt: skip
    assert code == pull.EXIT_OK
    assert len(FakeOllama.requests) == 1


@pytest.mark.parametrize("backend", ["vllm", "openai", "textgen", "nonsense"])
def test_backends_without_pull_are_usage_errors(backend: str) -> None:
    buf = io.StringIO()
    code = pull.pull_command("m", backend, console=Console(file=buf), env={})
    assert code == pull.EXIT_USAGE
    assert backend in buf.getvalue()
