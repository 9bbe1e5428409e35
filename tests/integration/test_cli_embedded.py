"""The README's promise, end to end: with NO configuration at all, ``inference chat "Once upon a
time"`` streams a continuation from the real model, and ``inference serve`` serves it to the
official ``openai`` SDK, both through the EMBEDDED local default (the llamacpp plugin's managed
``llama-server`` child, Gemma 3 270M), which does not outlive the command.

Every ``INFERENCE_*`` / ``LOCAL_*`` (and seed) variable is removed from the command's
environment except ``INFERENCE_CACHE_DIR`` (so the cached ``llama-server`` and GGUF are used) and
``INFERENCE_LLAMACPP_PORT``, which pins the child's port so that the child can be found by its
command line (``llama-server ... --port P``) in ``/proc`` while the command runs, and checked
for afterwards.  ``INFERENCE_PROVIDER`` is unset: the default is ``llamacpp``.

Needs the provisioned assets (``bash scripts/peers/llamacpp.sh setup``): missing ones skip
locally and FAIL under ``INFERENCE_REQUIRE_PEERS=1``, like every real-peer test.

Streaming is proven by how stdout arrives, not by timing alone: the CLI writes and flushes each
delta, so a streamed answer reaches the pipe in several separate reads spread over the
generation; the same reader on ``--no-stream`` (one write of the whole answer) sees exactly one
read with text, which shows that the measurement tells the two apart.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from inference_core.testing.local import missing_peer, unused_port

pytestmark = pytest.mark.llamacpp

INFERENCE = Path(sys.executable).parent / "inference"  # the dev venv's console script


@pytest.fixture(scope="module")
def embedded_assets() -> dict[str, Path]:
    """The cached ``llama-server`` and default GGUF the CLI will use (never builds anything).

    Uses provision.py's own cache checks, the ones ``ensure_llama_server`` /
    ``ensure_default_model`` make before deciding to build or assemble.
    """
    from inference_llamacpp import provision

    how = "run `bash scripts/peers/llamacpp.sh setup` first"
    server_bin = provision._server_dir() / "bin" / "llama-server"
    on_path = shutil.which("llama-server")  # the CLI would take this one first
    if on_path:
        server_bin = Path(on_path)
    elif not provision._cached_server_ok(server_bin, server_bin.with_name("llama-server.stamp")):
        missing_peer(f"no provisioned llama-server in {server_bin.parent} ({how})")
    models = provision.cache_dir() / "models"
    model = models / provision.MODEL_NAME
    if not provision._model_stamp_ok(model, models / (provision.MODEL_NAME + ".sha256")):
        missing_peer(f"the default model {model} is not provisioned ({how})")
    assert INFERENCE.is_file(), f"no console script {INFERENCE}"
    return {"server_bin": server_bin, "model": model}


def bare_env(llama_port: int) -> dict[str, str]:
    """os.environ with no inference configuration: only the cache dir and the child's port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INFERENCE_", "LOCAL_", "OPENAI_", "VLLM_"))
        and k not in ("ENABLE_FALLBACK", "FALLBACK_CHAIN", "PYTHONPATH")
    }
    if os.environ.get("INFERENCE_CACHE_DIR"):
        env["INFERENCE_CACHE_DIR"] = os.environ["INFERENCE_CACHE_DIR"]
    env["INFERENCE_LLAMACPP_PORT"] = str(llama_port)
    return env


def llama_children(port: int) -> set[int]:
    """PIDs of live ``llama-server`` processes whose command line says ``--port <port>``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
            with open(f"/proc/{entry}/stat") as fh:
                zombie = fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
        except OSError:
            continue
        if zombie or not argv or Path(argv[0]).name != "llama-server":
            continue
        if "--port" in argv[:-1] and argv[argv.index("--port") + 1] == str(port):
            found.add(int(entry))
    return found


def run_cli(args: list[str], env: dict[str, str], cwd: Path, llama_port: int) -> dict:
    """Run the CLI; timestamp every read of its stdout; watch /proc for its llama-server child."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(INFERENCE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    reads: list[tuple[float, bytes]] = []
    stderr: list[bytes] = []

    def pump() -> None:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            reads.append((time.monotonic() - t0, chunk))

    threads = [
        threading.Thread(target=pump, daemon=True),
        threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True),
    ]
    for t in threads:
        t.start()
    children: set[int] = set()
    try:
        while proc.poll() is None:
            children |= llama_children(llama_port)
            assert time.monotonic() - t0 < 120, "the CLI did not finish within 120 s"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for t in threads:
        t.join(10)
    return {
        "rc": proc.returncode,
        "reads": reads,
        "text": b"".join(c for _, c in reads).decode(),
        "stderr": b"".join(stderr).decode(errors="replace"),
        "children": children,
        "took": time.monotonic() - t0,
    }


def assert_no_survivor(children: set[int], port: int, gone) -> None:
    assert len(children) == 1, f"expected one managed llama-server on :{port}, saw {children}"
    (pid,) = children
    assert gone(pid), f"the managed llama-server {pid} outlived the command"
    assert not llama_children(port), f"a llama-server on :{port} is still running"
    with pytest.raises(httpx.ConnectError):  # and nobody answers on its port any more
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0, trust_env=False)


def text_reads(reads: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The reads that carried some visible text (not just the final newline)."""
    return [(t, c) for t, c in reads if c.strip()]


def test_chat_streams_from_the_embedded_default(embedded_assets, tmp_path, gone):
    port = unused_port()
    result = run_cli(
        ["chat", "Once upon a time", "--max-tokens", "16"], bare_env(port), tmp_path, port
    )
    assert result["rc"] == 0, result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert result["text"].strip(), "no text on stdout"
    assert "served by llamacpp (gemma-3-270m)" in result["stderr"], result["stderr"]

    pieces = text_reads(result["reads"])
    assert len(pieces) >= 2, f"the answer arrived in one piece: {result['reads']}"
    span = pieces[-1][0] - pieces[0][0]
    assert span >= 0.005, f"all pieces arrived at once ({span * 1000:.1f} ms): {pieces}"
    assert_no_survivor(result["children"], port, gone)
    print(
        f"\nembedded chat: {result['took']:.2f}s, {len(pieces)} reads with text over "
        f"{span * 1000:.0f} ms, first at {pieces[0][0]:.2f}s: {result['text']!r}"
    )


def test_no_stream_control_arrives_in_one_piece(embedded_assets, tmp_path, gone):
    """The same measurement on ``--no-stream`` sees one read: it does tell the modes apart."""
    port = unused_port()
    result = run_cli(
        ["chat", "Once upon a time", "--max-tokens", "16", "--no-stream"],
        bare_env(port),
        tmp_path,
        port,
    )
    assert result["rc"] == 0, result["stderr"]
    assert result["text"].strip()
    assert "served by llamacpp (gemma-3-270m)" in result["stderr"]
    assert len(text_reads(result["reads"])) == 1, result["reads"]
    assert_no_survivor(result["children"], port, gone)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, (
            f"inference serve exited ({proc.returncode}):\n{log.read_text()}"
        )
        try:
            if httpx.get(url + "/ready", timeout=2.0, trust_env=False).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the gateway was not ready within {timeout} s:\n{log.read_text()}")


def test_gateway_streams_to_the_openai_sdk_from_the_embedded_default(
    embedded_assets, tmp_path, gone
):
    from openai import OpenAI

    llama_port, port = unused_port(), unused_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(INFERENCE), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=bare_env(llama_port),
            cwd=tmp_path,
        )
    try:
        ready_after = wait_ready(url, proc, log)
        children = llama_children(llama_port)
        assert len(children) == 1, f"expected one managed llama-server, saw {children}"

        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        t0 = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model="default",
            messages=[{"role": "user", "content": "Once upon a time"}],
            stream=True,
            max_tokens=8,
        )
        assert raw.headers["x-inference-backend"] == "llamacpp"
        assert raw.headers["content-type"].startswith("text/event-stream")
        arrivals: list[tuple[float, str]] = []
        finishes: list[str] = []
        for chunk in raw.parse():
            assert chunk.model == "gemma-3-270m"
            for choice in chunk.choices:
                if choice.delta.content:
                    arrivals.append((time.monotonic() - t0, choice.delta.content))
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        assert len(arrivals) >= 2, arrivals
        assert arrivals[-1][0] - arrivals[0][0] >= 0.005, f"all at once: {arrivals}"
        assert finishes in (["length"], ["stop"]), finishes
        assert llama_children(llama_port) == children  # the same child served it
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"inference serve ignored SIGTERM for 45 s:\n{log.read_text()}")
    logged = log.read_text()
    # uvicorn shuts down gracefully, then re-raises the captured SIGTERM: exit status -15
    assert code in (0, -signal.SIGTERM), logged
    assert "Application shutdown complete" in logged
    # the child the gateway itself reported is the one found in /proc, and it is gone
    assert {int(p) for p in re.findall(r"managed llama-server pid (\d+)", logged)} == children
    assert_no_survivor(children, llama_port, gone)
    print(
        f"\nembedded gateway: ready after {ready_after:.2f}s; {len(arrivals)} content chunks "
        f"over {(arrivals[-1][0] - arrivals[0][0]) * 1000:.0f} ms: "
        f"{''.join(c for _, c in arrivals)!r}"
    )
