"""A ``llama-server`` child process that the plugin runs itself (the embedded local default).

Why a child process and not llama-cpp-python in-process: the child speaks the real llama.cpp
server protocol (the same code path as a remote llama-server, tested against the same
transcripts), its inference threads never compete with the gateway's event loop for the GIL, a
crash in native code takes down the child and not the gateway, and it can be restarted alone.

Lifetime: the child runs in its own session (a terminal's Ctrl-C goes to the gateway, which
stops it in order).  It dies with its parent in every case:

* ``stop()`` (the ``shutdown`` hook): SIGTERM, then SIGKILL after a grace period;
* an ``atexit`` handler stops every child still running when the interpreter exits;
* on Linux, ``PR_SET_PDEATHSIG``: the kernel sends SIGKILL to the child when the thread that
  spawned it dies, even if the gateway is SIGKILLed.  Children are spawned from one long-lived
  spawner thread, so that "the thread" is as long-lived as the process.  SIGKILL, not SIGTERM:
  nobody is left to wait for a graceful exit, and a llama-server busy starting up once outlived
  a SIGTERM in the test suite (a CI run of ``test_no_orphan_when_the_gateway_is_sigkilled``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inference_core import BackendUnavailable, Health

if TYPE_CHECKING:
    import httpx

__all__ = ["ManagedServer", "ServerSpec", "free_port"]

_LIVE: set[ManagedServer] = set()
_LIVE_LOCK = threading.Lock()
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-server-spawner")
_BIND_ERRORS = ("couldn't bind", "address already in use", "failed to bind")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pdeathsig_preexec() -> object | None:
    """A ``preexec_fn`` that asks Linux to SIGKILL the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec: keep it minimal
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class ServerSpec:
    """Everything needed to start one ``llama-server``."""

    binary: Path
    model: Path
    alias: str
    ctx_size: int = 8192
    parallel: int = 4
    threads: int = 1
    chat_template: Path | None = None
    embeddings: bool = True
    extra_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"

    def argv(self, port: int) -> list[str]:
        args = [
            str(self.binary),
            "-m",
            str(self.model),
            "--host",
            self.host,
            "--port",
            str(port),
            "-c",
            str(self.ctx_size),
            "--parallel",
            str(self.parallel),
            "--alias",
            self.alias,
            "-t",
            str(self.threads),
            "--no-webui",
            "--metrics",
        ]
        if self.embeddings:
            args += ["--embeddings", "--pooling", "mean"]
        if self.chat_template is not None:
            args += ["--chat-template-file", str(self.chat_template)]
        return args + list(self.extra_args)  # appended: a later flag wins


class ManagedServer:
    """One ``llama-server`` child process on ``spec.host``: spawn, wait, probe, stop."""

    def __init__(self, spec: ServerSpec, log_dir: Path, port: int | None = None) -> None:
        self.spec = spec
        self.log_dir = log_dir
        self.port = port or free_port(spec.host)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.ready_after: float | None = None  # seconds from spawn to /health 200
        self.restarts = 0
        self.starting = False  # between start() and ready (or failure)
        self._fixed_port = port is not None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"llama-server-managed.{self.port}.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------------ spawn/stop

    def _spawn_blocking(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.spec.argv(self.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_pdeathsig_preexec(),  # PR_SET_PDEATHSIG, see above
            )
        self.started_at = time.monotonic()
        self.ready_after = None
        with _LIVE_LOCK:
            _LIVE.add(self)

    async def spawn(self) -> None:
        """Start the child (from the long-lived spawner thread, see the module docstring)."""
        await asyncio.get_running_loop().run_in_executor(_SPAWNER, self._spawn_blocking)

    async def wait_ready(
        self, http: httpx.AsyncClient, timeout: float, interval: float = 0.05
    ) -> float:
        """Poll ``/health`` until 200; return seconds since spawn. Raise if it dies or times out."""
        assert self.started_at is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise BackendUnavailable(
                    f"llama-server exited with code {self.exit_code()} during start-up "
                    f"(log {self.log_path}):\n{self.log_tail()}",
                    backend="llamacpp",
                )
            state = await self.probe(http, timeout=min(2.0, max(0.1, interval * 20)))
            if state.state == "ready":
                self.ready_after = time.monotonic() - self.started_at
                return self.ready_after
            if time.monotonic() > deadline:
                await asyncio.to_thread(self.stop)
                raise BackendUnavailable(
                    f"llama-server was not ready after {timeout:.0f}s (log {self.log_path}):\n"
                    f"{self.log_tail()}",
                    backend="llamacpp",
                )
            await asyncio.sleep(interval)

    async def start(self, http: httpx.AsyncClient, timeout: float, attempts: int = 3) -> float:
        """Spawn and wait until ready, moving to another free port if this one is taken."""
        self.starting = True
        try:
            for attempt in range(1, attempts + 1):
                await self.spawn()
                try:
                    return await self.wait_ready(http, timeout)
                except BackendUnavailable:
                    bind_error = any(m in self.log_tail(40).lower() for m in _BIND_ERRORS)
                    if not bind_error or self._fixed_port or attempt == attempts:
                        raise
                    self.port = free_port(self.spec.host)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self.starting = False

    async def probe(self, http: httpx.AsyncClient, timeout: float) -> Health:
        """``GET /health``: 200 ready, 503 ``Loading model`` loading, anything else down."""
        from inference_core.http import openai_compat

        from . import classify_health

        config = _config_for(self.url)
        return await openai_compat.probe_health(
            http, config, timeout=timeout, classify=classify_health
        )

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code. Idempotent."""
        proc = self.process
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)
        return proc.returncode


def _config_for(url: str):  # a minimal BackendConfig for probing a URL
    from inference_core import BackendConfig

    return BackendConfig(name="llamacpp", base_urls=(url,))


@atexit.register
def _stop_all() -> None:
    """Interpreter exit: no managed llama-server outlives the process that started it."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop(grace=5.0)
