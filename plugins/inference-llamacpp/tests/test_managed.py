"""Managed mode (the embedded local default) with a stand-in llama-server (fake_llama_server.py).

The real binary is exercised by tests/integration/test_real_llamacpp.py; here the process
handling is checked quickly: the command line, start-up through ``loading``, restart after a
crash, SIGTERM then SIGKILL on shutdown, and no orphan when the parent process is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import inference_llamacpp
from inference_core import BackendConfig, BackendUnavailable, ChatRequest, ChatResponse
from inference_core.http import create_client
from inference_llamacpp.managed import ServerSpec

FAKE = Path(__file__).parent / "fake_llama_server.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX processes")


def gone(pid: int) -> bool:
    """True once ``pid`` is no longer a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


def _fakes_on(port: str) -> list[Path]:
    return [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_fake_on(p, port)]


def _is_fake_on(proc: Path, port: str) -> bool:
    try:
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"--port" in args and port.encode() in args and not gone(int(proc.name))


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    script = tmp_path / "llama-server"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    script.chmod(0o755)
    return script


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-model.gguf"
    path.write_bytes(b"GGUF fake")
    return path


@pytest.fixture
def managed_env(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("INFERENCE_CACHE_DIR", str(tmp_path / "cache"))
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    return argv_file


def managed_config(fake_bin: Path, model: Path, **options: str) -> BackendConfig:
    opts = {"server_bin": str(fake_bin), "model_path": str(model), "stop_grace": "1", **options}
    return BackendConfig(name="llamacpp", options=opts)


def test_argv_has_the_flags_and_extra_args_last():
    spec = ServerSpec(
        binary=Path("/x/llama-server"),
        model=Path("/m.gguf"),
        alias="gemma-3-270m",
        ctx_size=8192,
        parallel=4,
        threads=1,
        chat_template=Path("/t.jinja"),
        extra_args=["-t", "2"],
    )
    argv = spec.argv(28123)
    assert argv[:3] == ["/x/llama-server", "-m", "/m.gguf"]
    joined = " ".join(argv)
    for flag in (
        "--host 127.0.0.1",
        "--port 28123",
        "-c 8192",
        "--parallel 4",
        "--embeddings --pooling mean",
        "--alias gemma-3-270m",
        "--no-webui",
        "--metrics",
        "--chat-template-file /t.jinja",
    ):
        assert flag in joined
    assert argv[-2:] == ["-t", "2"]  # appended, so it wins over "-t 1"


async def test_startup_health_chat_shutdown(fake_bin, model, managed_env, monkeypatch):
    monkeypatch.setenv("FAKE_LOADING_SECONDS", "0.5")
    plugin = inference_llamacpp.LlamaCppPlugin()
    config = managed_config(fake_bin, model, extra_args="--seed 7", threads="1")
    async with create_client() as http:
        started = asyncio.create_task(plugin.startup(config=config, http=http))
        await asyncio.sleep(0)  # let startup begin
        # while it starts, health (with the original config, no URL) reports loading or down
        seen: list[str] = []
        while not started.done():
            seen.append((await plugin.health(config=config, http=http)).state)
            await asyncio.sleep(0.02)
        ready_config = started.result()
        # provisioning, spawning, port not open yet, 503 Loading model: all "loading", never down
        assert seen
        assert seen[0] == "loading"
        assert set(seen) <= {"loading", "ready"}
        server = plugin.managed_server("llamacpp")
        assert ready_config.base_urls == (server.url,)
        assert ready_config.model == "tiny-model"  # alias from the GGUF file name
        assert ready_config.options["context_length"] == "2048"  # -c 8192 over 4 slots
        assert server.url.startswith("http://127.0.0.1:")
        argv = json.loads(managed_env.read_text())
        assert argv[argv.index("--alias") + 1] == "tiny-model"
        assert argv[-2:] == ["--seed", "7"]
        assert "--chat-template-file" not in argv  # only the default model gets Gemma's template

        health = await plugin.health(config=ready_config, http=http)
        assert health.state == "ready"
        assert f"pid {server.pid}" in health.detail
        reply = await plugin.chat(
            request=ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4),
            config=ready_config,
            http=http,
        )
        assert isinstance(reply, ChatResponse)

        # a second startup (say, a second router) shares the running child ...
        again = await plugin.startup(config=config, http=http)
        assert again == ready_config
        pid = server.pid
        # ... so the first shutdown keeps it running, the last one stops it
        await plugin.shutdown(config=ready_config)
        assert server.alive()
        assert (await plugin.health(config=again, http=http)).state == "ready"
        await plugin.shutdown(config=again)
        assert wait_gone(pid, 5)
        assert plugin.managed_server("llamacpp") is None


async def test_dead_child_is_reported_and_restarted(fake_bin, model, managed_env, monkeypatch):
    monkeypatch.setenv("FAKE_LOADING_SECONDS", "0.1")
    plugin = inference_llamacpp.LlamaCppPlugin()
    config = managed_config(fake_bin, model)
    async with create_client() as http:
        ready_config = await plugin.startup(config=config, http=http)
        server = plugin.managed_server("llamacpp")
        first_pid = server.pid
        os.kill(first_pid, signal.SIGKILL)
        assert wait_gone(first_pid, 5)
        health = await plugin.health(config=ready_config, http=http)
        assert health.state == "down"
        assert "exited" in health.detail
        assert "restarting" in health.detail
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            health = await plugin.health(config=ready_config, http=http)
            if health.state == "ready":
                break
            await asyncio.sleep(0.05)
        assert health.state == "ready"
        assert server.pid != first_pid
        assert server.url == ready_config.base_url  # same port: the router's config still holds
        assert server.restarts == 1
        await plugin.shutdown(config=config)
        assert wait_gone(server.pid, 5)


async def test_restart_can_be_disabled(fake_bin, model, managed_env, monkeypatch):
    monkeypatch.setenv("FAKE_LOADING_SECONDS", "0")
    plugin = inference_llamacpp.LlamaCppPlugin()
    config = managed_config(fake_bin, model, restart="false")
    async with create_client() as http:
        ready_config = await plugin.startup(config=config, http=http)
        server = plugin.managed_server("llamacpp")
        os.kill(server.pid, signal.SIGKILL)
        assert wait_gone(server.pid, 5)
        health = await plugin.health(config=ready_config, http=http)
        assert health.state == "down"
        assert "restarting" not in health.detail
        await asyncio.sleep(0.3)
        assert not server.alive()
        await plugin.shutdown(config=config)


async def test_stubborn_child_gets_sigkill(fake_bin, model, managed_env, monkeypatch):
    monkeypatch.setenv("FAKE_LOADING_SECONDS", "0")
    monkeypatch.setenv("FAKE_IGNORE_TERM", "1")
    plugin = inference_llamacpp.LlamaCppPlugin()
    config = managed_config(fake_bin, model, stop_grace="0.5")
    async with create_client() as http:
        await plugin.startup(config=config, http=http)
        server = plugin.managed_server("llamacpp")
        t0 = time.monotonic()
        await plugin.shutdown(config=config)
        assert wait_gone(server.pid, 5)
        assert server.process.returncode == -signal.SIGKILL
        assert 0.4 < time.monotonic() - t0 < 5


async def test_child_that_fails_to_start_raises_with_its_log(
    fake_bin, model, managed_env, monkeypatch
):
    monkeypatch.setenv("FAKE_EXIT_CODE", "3")
    plugin = inference_llamacpp.LlamaCppPlugin()
    async with create_client() as http:
        with pytest.raises(BackendUnavailable, match="exited with code 3") as info:
            await plugin.startup(config=managed_config(fake_bin, model), http=http)
    assert "failed to load model" in info.value.message
    assert plugin.managed_server("llamacpp") is None


async def test_start_timeout_stops_the_child(fake_bin, model, managed_env, monkeypatch):
    monkeypatch.setenv("FAKE_LOADING_SECONDS", "60")
    plugin = inference_llamacpp.LlamaCppPlugin()
    config = managed_config(fake_bin, model, start_timeout="1")
    async with create_client() as http:
        with pytest.raises(BackendUnavailable, match="not ready after 1s"):
            await plugin.startup(config=config, http=http)
    argv = json.loads(managed_env.read_text())
    port = argv[argv.index("--port") + 1]
    assert not _fakes_on(port), "the child that never became ready is still running"


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import inference_llamacpp
    from inference_core import BackendConfig
    from inference_core.http import create_client

    async def main():
        config = BackendConfig(name="llamacpp", options={
            "server_bin": sys.argv[1], "model_path": sys.argv[2]})
        async with create_client() as http:
            await inference_llamacpp.plugin.startup(config=config, http=http)
        print(inference_llamacpp.plugin.managed_server("llamacpp").pid, flush=True)
        if sys.argv[3] == "exit":
            return  # normal interpreter exit: atexit stops the child
        await asyncio.sleep(3600)  # killed by the test

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_no_orphan_when_the_parent_goes_away(fake_bin, model, managed_env, tmp_path, how):
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_SCRIPT)
    env = dict(os.environ, FAKE_LOADING_SECONDS="0")
    parent = subprocess.Popen(
        [sys.executable, str(script), str(fake_bin), str(model), how],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        child_pid = int(parent.stdout.readline())
        assert not gone(child_pid)
        if how == "sigkill":
            parent.kill()  # no atexit, no shutdown hook: PR_SET_PDEATHSIG must do it
        parent.wait(timeout=30)
        assert wait_gone(child_pid, 10), f"managed llama-server {child_pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
