# ruff: noqa: ASYNC110, ASYNC220, ASYNC230  (a test harness: short blocking spawns are fine)
"""Chaos scenario runner: steady load through the real gateway while one fault at a time hits
the fallback chain; prints (and optionally writes) the results table.

Chain: primary = ``llamacpp`` plugin -> the real llama-server (``scripts/peers/llamacpp.sh``),
or a fake when ``--primary fake``; fallback = ``vllm`` plugin -> a fast fake OpenAI-compatible
server (``fake_backend.py``, its own process). Scenarios that inject HTTP-level faults put the
fault proxy (``proxy.py``, in this process) in front of the primary; kill/stop scenarios signal
the primary process itself and the gateway talks to it directly. Each scenario gets a fresh
gateway process (``inference serve``) so that breaker and health state start clean.

Timeline of a scenario: ``warm`` s of clean traffic, the fault for ``fault`` s, recovery, then
``recover`` s of traffic; the load is paced at ``rate`` requests/s with ``concurrency``
clients, ``total`` requests at most. ``GET /v1/health/inference`` is polled every 0.1 s to time
when the primary's state flipped to not-ready after the fault and back to ready after recovery.

Everything listens on 127.0.0.1 (ports 29000-29999); every loop is bounded; every process
started here is stopped on exit.

    .venv/bin/python scripts/chaos/run.py --primary llamacpp --total 400 --rate 10 \\
        --write-doc docs/resilience.md --json var/chaos/results.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from httpwire import read_head, relay_body  # noqa: E402
from load import LoadResult, run_load  # noqa: E402
from proxy import FaultProxy  # noqa: E402

__all__ = ["SCENARIOS", "Config", "Env", "ScenarioResult", "run_scenarios"]

PRIMARY = "llamacpp"
FALLBACK = "vllm"
SECTION = "## Chaos suite results"


# ------------------------------------------------------------------------------ config
@dataclass
class Config:
    primary: str = "llamacpp"  # "llamacpp" (real llama-server) or "fake"
    total: int = 400  # requests per scenario (upper bound)
    rate: float = 10.0  # requests per second
    concurrency: int = 20
    warm: float = 6.0
    fault: float = 14.0
    recover: float = 14.0
    max_tokens: int = 4
    health_interval: float = 2.0
    health_timeout: float = 1.0
    first_token_timeout: float = 3.0
    idle_timeout: float = 2.0
    request_deadline: float = 10.0
    breaker_threshold: int = 3
    breaker_window: float = 10.0
    breaker_cooldown: float = 2.0
    max_retries: int = 1
    retry_backoff: float = 0.05
    retry_after_cap: float = 2.0
    base_port: int = 29400  # gateway, proxy, primary, fallback, replica2 = base, +1, ... +4
    replicas: int = 1  # 2: a second primary replica (direct, never faulted): stream resume
    gateway_cmd: list[str] | None = None
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def ports(self) -> dict[str, int]:
        b = self.base_port
        return {
            "gateway": b, "proxy": b + 1, "primary": b + 2, "fallback": b + 3, "replica2": b + 4,
        }  # fmt: skip


def gateway_command(cfg: Config) -> list[str]:
    if cfg.gateway_cmd:
        return cfg.gateway_cmd
    exe = REPO / ".venv" / "bin" / "inference"
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "inference_core.cli"]
    return [*cli, "serve", "--host", "127.0.0.1", "--port", str(cfg.ports["gateway"])]


def gateway_available() -> str | None:
    """None when the gateway can be started, else why not."""
    try:
        import importlib.util

        if importlib.util.find_spec("inference_core.cli") is None:
            return "inference_core.cli is not there (no `inference serve`)"
        if (
            importlib.util.find_spec("inference_core.gateway.app") is None
            and not (REPO / "core/src/inference_core/gateway/__init__.py").exists()
        ):
            return "inference_core.gateway is not there"
    except ImportError as exc:
        return str(exc)
    return None


def llamacpp_available() -> str | None:
    cache = Path(os.environ.get("INFERENCE_CACHE_DIR", Path.home() / ".cache/inference-core"))
    envf = cache / "peers" / "llamacpp.env"
    if not envf.exists():
        return f"{envf} missing: run `bash scripts/peers/llamacpp.sh setup`"
    return None


# ------------------------------------------------------------------------------ processes
async def _http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """Tiny loopback GET on a fresh connection (no pooling, so it never disturbs anything)."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            writer.write(req.encode())
            await writer.drain()
            head = await read_head(reader)
            if head is None:
                raise ConnectionError("closed without an answer")
            body = bytearray()

            async def sink(b: bytes) -> None:
                body.extend(b)

            await relay_body(reader, head, sink)
        finally:
            writer.close()
        raw = bytes(body)
        return head.status, _dechunk(raw) if head.chunked else raw

    return await asyncio.wait_for(go(), timeout)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        line, _, rest = body.partition(b"\r\n")
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


async def wait_http_ok(port: int, path: str, timeout: float, proc: Proc | None = None) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            return False
        with contextlib.suppress(Exception):
            status, _ = await _http_get(port, path)
            if status == 200:
                return True
        await asyncio.sleep(0.1)
    return False


class Proc:
    """A backend process we own: start, SIGKILL, SIGSTOP/SIGCONT, restart, stop."""

    def __init__(self, name: str, port: int, log_dir: Path) -> None:
        self.name, self.port, self.log_dir = name, port, log_dir
        self.pid: int | None = None

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        with contextlib.suppress(ChildProcessError):
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return False
        return True

    async def start(self) -> None:
        raise NotImplementedError

    def signal(self, sig: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)

    async def stop(self) -> None:
        if self.pid is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for _ in range(50):
            if not self.alive():
                break
            await asyncio.sleep(0.1)
        if self.alive():
            self.kill()
        self.pid = None


class FakeProc(Proc):
    async def start(self) -> None:
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(
            [sys.executable, str(HERE / "fake_backend.py"), "--port", str(self.port),
             "--model", f"{self.name}-model", "--max-seconds", "1800"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self.pid = p.pid
        self._popen = p
        if not await wait_http_ok(self.port, "/health", 15, self):
            raise RuntimeError(f"fake backend {self.name} did not start on {self.port}")

    def alive(self) -> bool:
        p = getattr(self, "_popen", None)
        return p is not None and p.poll() is None

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        p = getattr(self, "_popen", None)
        if p is not None:
            with contextlib.suppress(Exception):
                p.wait(5)


class LlamaProc(Proc):
    script = REPO / "scripts" / "peers" / "llamacpp.sh"

    async def start(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            "bash", str(self.script), "start", str(self.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 150)
        if proc.returncode != 0:
            raise RuntimeError(f"llamacpp.sh start {self.port} failed: {err.decode()[-800:]}")
        self.pid = int(out.decode().strip().splitlines()[-1])

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        # a killed child of the (exited) start script is reparented: check for a zombie
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
        return True

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        for _ in range(50):
            if not self.alive():
                break
            time.sleep(0.02)

    async def stop(self) -> None:
        self.signal(signal.SIGCONT)
        proc = await asyncio.create_subprocess_exec(
            "bash", str(self.script), "stop", str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.wait_for(proc.wait(), 30)
        self.pid = None


@dataclass
class Env:
    cfg: Config
    proxy: FaultProxy
    primary: Proc
    fallback: Proc
    log_dir: Path
    gateway: subprocess.Popen[bytes] | None = None
    replica2: Proc | None = None  # the primary's second replica (never faulted)

    @property
    def procs(self) -> list[Proc]:
        return [p for p in (self.primary, self.fallback, self.replica2) if p is not None]

    async def ensure_backends(self) -> None:
        self.proxy.set_fault("pass")
        self.proxy.release_held()
        for p in self.procs:
            p.signal(signal.SIGCONT)
            if not p.alive():
                await p.start()
        for p in self.procs:
            if not await wait_http_ok(p.port, "/health", 60, p):
                raise RuntimeError(f"{p.name} not healthy on {p.port}")

    def gateway_env(self, via_proxy: bool) -> dict[str, str]:
        cfg, ports = self.cfg, self.cfg.ports
        primary_port = ports["proxy"] if via_proxy else ports["primary"]
        env = {k: v for k, v in os.environ.items() if not _is_config_var(k)}
        env.update(
            {
                "INFERENCE_PROVIDER": PRIMARY,
                "INFERENCE_LLAMACPP_BASE_URL": f"http://127.0.0.1:{primary_port}"
                + (f",http://127.0.0.1:{ports['replica2']}" if self.replica2 else ""),
                "INFERENCE_LLAMACPP_MODEL": "gemma-3-270m",
                "ENABLE_FALLBACK": "true",
                "FALLBACK_CHAIN": FALLBACK,
                "INFERENCE_VLLM_BASE_URL": f"http://127.0.0.1:{ports['fallback']}",
                "INFERENCE_VLLM_MODEL": "fallback-model",
                "HEALTH_CHECK_INTERVAL": f"{cfg.health_interval:g}",
                "HEALTH_CHECK_TIMEOUT": f"{cfg.health_timeout:g}",
                "INFERENCE_FIRST_TOKEN_TIMEOUT": f"{cfg.first_token_timeout:g}",
                "INFERENCE_IDLE_TIMEOUT": f"{cfg.idle_timeout:g}",
                "INFERENCE_REQUEST_DEADLINE": f"{cfg.request_deadline:g}",
                "INFERENCE_BREAKER_THRESHOLD": str(cfg.breaker_threshold),
                "INFERENCE_BREAKER_WINDOW": f"{cfg.breaker_window:g}",
                "INFERENCE_BREAKER_COOLDOWN": f"{cfg.breaker_cooldown:g}",
                "INFERENCE_MAX_RETRIES": str(cfg.max_retries),
                "INFERENCE_RETRY_BACKOFF": f"{cfg.retry_backoff:g}",
                "INFERENCE_RETRY_AFTER_CAP": f"{cfg.retry_after_cap:g}",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        env.update(cfg.extra_env)
        return env

    async def start_gateway(self, name: str, via_proxy: bool) -> None:
        port = self.cfg.ports["gateway"]
        log = open(self.log_dir / f"gateway-{name}.log", "wb")  # noqa: SIM115
        cwd = tempfile.mkdtemp(prefix="chaos-gw-")  # no stray .env file gets read
        self._gw_cwd = cwd
        self.gateway = subprocess.Popen(
            gateway_command(self.cfg), env=self.gateway_env(via_proxy), cwd=cwd,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        end = time.monotonic() + 45
        while time.monotonic() < end:
            if self.gateway.poll() is not None:
                tail = (self.log_dir / f"gateway-{name}.log").read_text()[-1500:]
                raise RuntimeError(f"gateway exited with {self.gateway.returncode}:\n{tail}")
            with contextlib.suppress(Exception):
                status, body = await _http_get(port, "/v1/health/inference")
                if status == 200 and primary_state(json.loads(body)) == "ready":
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("gateway not ready (primary not 'ready') within 45 s")

    async def stop_gateway(self) -> None:
        gw = self.gateway
        self.gateway = None
        if gw is None:
            return
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
            for _ in range(50):
                if gw.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            if gw.poll() is None:
                gw.kill()
                gw.wait(5)
        with contextlib.suppress(Exception):
            shutil.rmtree(self._gw_cwd)


def _is_config_var(k: str) -> bool:
    return (
        k.startswith(("INFERENCE_", "OPENAI_", "LOCAL_", "VLLM_"))
        or k in ("ENABLE_FALLBACK", "FALLBACK_CHAIN", "HEALTH_CHECK_INTERVAL",
                 "HEALTH_CHECK_TIMEOUT")
    ) and k != "INFERENCE_CACHE_DIR"  # fmt: skip


def primary_state(obj: Any, name: str = PRIMARY) -> str | None:
    """The named backend's ``state`` in a /v1/health/inference body, whatever its nesting."""
    if isinstance(obj, dict):
        if obj.get("name") == name and isinstance(obj.get("state"), str):
            return obj["state"]
        v = obj.get(name)
        if isinstance(v, dict) and isinstance(v.get("state"), str):
            return v["state"]
        for sub in obj.values():
            s = primary_state(sub, name)
            if s is not None:
                return s
    elif isinstance(obj, list):
        for sub in obj:
            s = primary_state(sub, name)
            if s is not None:
                return s
    return None


# ------------------------------------------------------------------------------ scenarios
Action = Callable[[Env], Awaitable[None]]


@dataclass
class Scenario:
    key: str
    title: str
    inject: Action
    recover: Action
    via_proxy: bool = True
    expect_down: bool = False  # the primary's health must flip (and back)
    one_healthy: bool = True  # some backend of the chain stays healthy throughout


async def _noop(env: Env) -> None:
    return None


def _fault(mode: str, **params: Any) -> Action:
    async def act(env: Env) -> None:
        env.proxy.set_fault(mode, **params)

    return act


async def _pass(env: Env) -> None:
    env.proxy.set_fault("pass")
    env.proxy.release_held()


async def _kill_primary(env: Env) -> None:
    env.primary.kill()


async def _restart_primary(env: Env) -> None:
    await env.primary.start()


async def _stop_primary(env: Env) -> None:
    env.primary.signal(signal.SIGSTOP)


async def _cont_primary(env: Env) -> None:
    env.primary.signal(signal.SIGCONT)


async def _kill_all(env: Env) -> None:
    for p in env.procs:
        p.kill()


async def _restart_all(env: Env) -> None:
    await asyncio.gather(*(p.start() for p in env.procs))


def _sequence(*steps: tuple[float, Action]) -> Action:
    """Run actions at offsets (s) from the injection; bounded by the last offset."""

    async def act(env: Env) -> None:
        t0 = time.monotonic()
        for offset, a in steps:
            await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
            await a(env)

    return act


def build_scenarios(cfg: Config) -> list[Scenario]:
    third = cfg.fault / 3
    slow = cfg.first_token_timeout + 2.0
    return [
        Scenario("kill", "1. primary SIGKILLed mid-traffic, restarted later",
                 _kill_primary, _restart_primary, via_proxy=False, expect_down=True),
        Scenario("sigstop", "2a. primary hangs (SIGSTOP; kernel still accepts)",
                 _stop_primary, _cont_primary, via_proxy=False, expect_down=True),
        Scenario("blackhole", "2b. primary hangs (proxy blackhole: accept, never answer)",
                 _fault("blackhole", hold_max=cfg.fault + 30), _pass, expect_down=True),
        Scenario("http_5xx", "3a. 500/502/503 bursts (every path)",
                 _sequence((0, _fault("http_error", status=500)),
                           (third, _fault("http_error", status=502, body="html")),
                           (2 * third, _fault("http_error", status=503))),
                 _pass, expect_down=True),
        Scenario("http_flaky", "3c. intermittent 502/500 on 30% of chat requests",
                 _sequence((0, _fault("http_error", status=502, probability=0.3,
                                      paths=["/v1/chat"])),
                           (cfg.fault / 2, _fault("http_error", status=500, probability=0.3,
                                                  paths=["/v1/chat"]))),
                 _pass),
        Scenario("http_429", "3b. 429 with Retry-After: 1 on chat",
                 _fault("http_error", status=429, retry_after=1, paths=["/v1/chat"]), _pass),
        Scenario("slow", f"4. first byte {slow:g}s > TTFT {cfg.first_token_timeout:g}s (chat)",
                 _fault("slow_first_byte", delay=slow, paths=["/v1/chat"]), _pass),
        Scenario("reset", "5a. TCP RST: before the answer / in the 1st event / after a few events",
                 _sequence((0, _fault("reset", paths=["/v1/chat"])),
                           (third, _fault("reset", after_bytes=120, paths=["/v1/chat"])),
                           (2 * third, _fault("reset", after_bytes=600, paths=["/v1/chat"]))),
                 _pass),
        Scenario("truncate", "5b. body cut (FIN) in the 1st event / later; SSE ended w/o [DONE]",
                 _sequence((0, _fault("truncate", after_bytes=150, paths=["/v1/chat"])),
                           (third, _fault("truncate", after_bytes=600, paths=["/v1/chat"])),
                           (2 * third, _fault("truncate_clean", after_bytes=100,
                                              paths=["/v1/chat"]))),
                 _pass),
        Scenario("garbage", "6. garbage 200s: invalid JSON, wrong shape, HTML, junk SSE (chat)",
                 _fault("garbage", kind="rotate", paths=["/v1/chat"]), _pass),
        Scenario("all_down", "7. every backend SIGKILLed, then both restarted",
                 _kill_all, _restart_all, via_proxy=False, expect_down=True, one_healthy=False),
    ]  # fmt: skip


SCENARIOS = [s.key for s in build_scenarios(Config())]


# ------------------------------------------------------------------------------ running
@dataclass
class ScenarioResult:
    key: str
    title: str
    summary: dict[str, Any]
    fault_at: float
    recovered_at: float
    down_after: float | None
    up_after: float | None
    expect_down: bool
    one_healthy: bool
    during_fault: dict[str, Any]
    after_recovery: dict[str, Any]
    examples: dict[str, list[str]]
    failures: list[str]
    health_trace: list[tuple[float, str | None]]
    error: str | None = None

    def targets(self, cfg: Config) -> list[str]:
        """The targets this scenario missed (empty = all met)."""
        missed = []
        s = self.summary
        for k in ("hung", "malformed", "silent_truncated"):
            if s.get(k):
                missed.append(f"{k}={s[k]}")
        if self.one_healthy and s["success_rate_excl_midstream"] < 0.999:
            missed.append(
                f"success {s['success_rate_excl_midstream'] * 100:.2f}% < 99.9% "
                "(excluding streams cut after their first chunk)"
            )
        if not self.one_healthy:
            ar = self.after_recovery
            if ar["sent"] and ar["success_rate"] < 0.999:
                missed.append(f"after recovery success {ar['success_rate'] * 100:.2f}% < 99.9%")
        if self.expect_down:
            limit_down = cfg.health_interval + cfg.health_timeout
            if self.down_after is None:
                missed.append("primary never marked down")
            elif self.down_after > limit_down:
                missed.append(f"marked down after {self.down_after:.1f}s > {limit_down:g}s")
            if self.up_after is None:
                missed.append("primary never marked ready again")
            elif self.up_after > cfg.health_interval:
                missed.append(
                    f"back after {self.up_after:.1f}s > {cfg.health_interval:g}s interval"
                )
        if self.error:
            missed.append(f"error: {self.error}")
        return missed


async def _poll_health(
    port: int, trace: list[tuple[float, str | None]], t0: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        state: str | None
        try:
            status, body = await _http_get(port, "/v1/health/inference", timeout=1.0)
            state = primary_state(json.loads(body)) if status in (200, 503) else f"http{status}"
        except Exception as exc:
            state = f"error:{type(exc).__name__}"
        trace.append((time.monotonic() - t0, state))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


def _flip_times(trace, fault_at, recovered_at, lasts_until):
    down_after = up_after = None
    for t, st in trace:
        if t >= fault_at and st != "ready" and down_after is None and t < lasts_until:
            down_after = t - fault_at
    for t, st in trace:
        if t >= recovered_at and st == "ready":
            up_after = t - recovered_at
            break
    return down_after, up_after


async def run_one(env: Env, sc: Scenario, log: Callable[[str], None]) -> ScenarioResult:
    cfg = env.cfg
    await env.ensure_backends()
    await env.start_gateway(sc.key, sc.via_proxy)
    trace: list[tuple[float, str | None]] = []
    stop = asyncio.Event()
    t0 = time.monotonic()
    poller = asyncio.create_task(_poll_health(cfg.ports["gateway"], trace, t0, stop))
    stop_load = asyncio.Event()
    load = asyncio.create_task(
        run_load(f"http://127.0.0.1:{cfg.ports['gateway']}", total=cfg.total,
                 concurrency=cfg.concurrency, rate=cfg.rate, deadline=cfg.request_deadline,
                 max_tokens=cfg.max_tokens, t0=t0, stop=stop_load, request_id_prefix=sc.key,
                 max_duration=cfg.warm + cfg.fault + cfg.recover + 60)
    )  # fmt: skip
    error = None
    fault_at = recovered_at = float("nan")
    try:
        try:
            await asyncio.sleep(cfg.warm)
            fault_at = time.monotonic() - t0
            log(f"  [{sc.key}] inject at {fault_at:.1f}s")
            inject = asyncio.create_task(sc.inject(env))
            await asyncio.sleep(cfg.fault)
            await inject
            await sc.recover(env)
            recovered_at = time.monotonic() - t0
            log(f"  [{sc.key}] recovered at {recovered_at:.1f}s")
            await asyncio.sleep(cfg.recover)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        stop_load.set()
        try:
            result: LoadResult = await load  # bounded: max_duration + deadline + 1
        except Exception as exc:
            error = error or f"load driver: {type(exc).__name__}: {exc}"
            result = LoadResult()
        # keep polling until the primary is ready again (bounded)
        end = time.monotonic() + 2 * cfg.health_interval + 3
        while time.monotonic() < end and not any(
            t >= recovered_at and s == "ready" for t, s in trace
        ):
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await poller
        if not load.done():
            load.cancel()
            with contextlib.suppress(BaseException):
                await load
        await env.stop_gateway()
    _annotate_from_gateway_log(result, env.log_dir / f"gateway-{sc.key}.log")
    down_after, up_after = _flip_times(trace, fault_at, recovered_at, recovered_at)
    rec_plus = recovered_at + cfg.health_interval
    res = ScenarioResult(
        key=sc.key, title=sc.title, summary=result.summary(),
        fault_at=fault_at, recovered_at=recovered_at,
        down_after=down_after if sc.expect_down else None,
        up_after=up_after if sc.expect_down else None,
        expect_down=sc.expect_down, one_healthy=sc.one_healthy,
        during_fault=result.summary(result.window(fault_at, recovered_at)),
        after_recovery=result.summary(result.window(rec_plus, 1e9)),
        examples=result.examples(),
        failures=[f"t={o.t_start:.2f}s {'stream' if o.stream else 'json'} status={o.status} "
                  f"{o.detail}" for o in result.outcomes if o.kind == "failed_well_formed"][:8],
        health_trace=_compress(trace), error=error,
    )  # fmt: skip
    return res


def _annotate_from_gateway_log(result: LoadResult, path: Path) -> None:
    """Say, for each bad outcome, whether the gateway's access log has its request id (no
    entry = the request never reached the app, e.g. a keep-alive connection closed under it)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for o in result.outcomes:
        if o.kind in ("hung", "malformed", "silent_truncated") and o.request_id:
            seen = f'"request_id":"{o.request_id}"' in text
            o.detail += f" [gateway access log: {'has it' if seen else 'NO entry'}]"


def _compress(trace: list[tuple[float, str | None]]) -> list[tuple[float, str | None]]:
    out: list[tuple[float, str | None]] = []
    for t, s in trace:
        if not out or out[-1][1] != s:
            out.append((round(t, 2), s))
    return out


async def run_scenarios(
    cfg: Config, keys: list[str] | None = None, log: Callable[[str], None] = print
) -> list[ScenarioResult]:
    """Run the chosen scenarios one after another; always stops everything it started."""
    log_dir = cfg.log_dir or Path(tempfile.mkdtemp(prefix="chaos-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    ports = cfg.ports
    primary: Proc = (
        LlamaProc("primary", ports["primary"], log_dir)
        if cfg.primary == "llamacpp"
        else FakeProc("primary", ports["primary"], log_dir)
    )
    fallback = FakeProc("fallback", ports["fallback"], log_dir)
    proxy = FaultProxy(("127.0.0.1", ports["primary"]), port=ports["proxy"])
    env = Env(cfg, proxy, primary, fallback, log_dir)
    if cfg.replicas == 2:
        env.replica2 = (
            LlamaProc("replica2", ports["replica2"], log_dir)
            if cfg.primary == "llamacpp"
            else FakeProc("primary", ports["replica2"], log_dir)
        )
    chosen = [s for s in build_scenarios(cfg) if keys is None or s.key in keys]
    if cfg.replicas == 2:  # the backend stays ready through its other replica: no flip
        for sc in chosen:
            sc.expect_down = False
    results: list[ScenarioResult] = []
    await proxy.start()
    try:
        for sc in chosen:
            log(f"scenario {sc.key}: {sc.title}")
            try:
                r = await run_one(env, sc, log)
            except Exception as exc:
                log(f"  [{sc.key}] could not run: {exc}")
                r = ScenarioResult(sc.key, sc.title, LoadResult().summary(), float("nan"),
                                   float("nan"), None, None, sc.expect_down, sc.one_healthy,
                                   {}, {"sent": 0}, {}, [], [], error=str(exc)[-600:])  # fmt: skip
            results.append(r)
            log(f"  [{sc.key}] {json.dumps(r.summary)} down={r.down_after} up={r.up_after}")
            missed = r.targets(cfg)
            log(f"  [{sc.key}] targets: {'met' if not missed else 'MISSED ' + '; '.join(missed)}")
    finally:
        await env.stop_gateway()
        await proxy.close()
        for p in env.procs:
            with contextlib.suppress(Exception):
                await p.stop()
    return results


# ------------------------------------------------------------------------------ reporting
def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def markdown_table(results: list[ScenarioResult], cfg: Config) -> str:
    head = (
        "| scenario | sent | ok | failed well-formed (of which mid-stream) | hung | malformed "
        "| silent trunc. | success (excl. mid-stream) | served primary/fallback | p50 ms | p99 ms "
        "| p50/p99 ms during the fault | down after s | up after s | targets |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for r in results:
        s = r.summary
        missed = r.targets(cfg)
        success = f"{s['success_rate'] * 100:.2f}% ({s['success_rate_excl_midstream'] * 100:.2f}%)"
        if not r.one_healthy and r.after_recovery.get("sent"):
            success += f" ({r.after_recovery['success_rate'] * 100:.1f}% after recovery)"
        rows.append(
            f"| {r.title} | {s['sent']} | {s['succeeded']} "
            f"| {s['failed_well_formed']} ({s['midstream_errors']}) "
            f"| {s['hung']} | {s['malformed']} | {s['silent_truncated']} | {success} "
            f"| {s['served_by'].get(PRIMARY, 0)}/{s['served_by'].get(FALLBACK, 0)} "
            f"| {s['p50_ms']} | {s['p99_ms']} "
            f"| {r.during_fault.get('p50_ms')}/{r.during_fault.get('p99_ms')} "
            f"| {_fmt_s(r.down_after) if r.expect_down else 'n/a'} "
            f"| {_fmt_s(r.up_after) if r.expect_down else 'n/a'} "
            f"| {'met' if not missed else 'MISSED: ' + '; '.join(missed)} |"
        )
    return head + "\n".join(rows) + "\n"


BEGIN, END = "<!-- chaos-results:begin (scripts/chaos/run.py) -->", "<!-- chaos-results:end -->"


def write_doc_section(path: Path, body: str) -> None:
    """Put ``body`` into the ``## Chaos suite results`` section of ``path``.

    Only the block between the BEGIN/END markers is replaced when the section has them (the
    hand-written findings around it stay); else the section is (re)written with the block.
    """
    text = path.read_text() if path.exists() else "# Resilience\n"
    block = f"{BEGIN}\n{body.rstrip()}\n{END}\n"
    start = text.find(SECTION)
    if start >= 0 and BEGIN in text[start:] and END in text[start:]:
        b = text.index(BEGIN, start)
        e = text.index(END, b) + len(END)
        new = text[:b] + block.rstrip("\n") + text[e:]
    elif start < 0:
        new = text.rstrip("\n") + f"\n\n{SECTION}\n\n" + block
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        tail = "" if nxt < 0 else text[nxt + 1 :]
        new = text[:start] + f"{SECTION}\n\n" + block + ("\n" + tail if tail else "")
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--primary", choices=["llamacpp", "fake"], default="llamacpp")
    ap.add_argument("--scenarios", default="all", help=f"comma list of {','.join(SCENARIOS)}")
    ap.add_argument("--total", type=int, default=400, help="requests per scenario (max)")
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--warm", type=float, default=6.0)
    ap.add_argument("--fault", type=float, default=14.0)
    ap.add_argument("--recover", type=float, default=14.0)
    ap.add_argument("--base-port", type=int, default=29400)
    ap.add_argument(
        "--set", action="append", default=[], metavar="VAR=VALUE",
        help="an extra gateway variable (e.g. INFERENCE_STREAM_RESUME=off for a control run)",
    )  # fmt: skip
    ap.add_argument(
        "--replicas", type=int, choices=[1, 2], default=1,
        help="2: the primary gets a second replica (never faulted; stream resume lands there)",
    )  # fmt: skip
    ap.add_argument("--log-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write raw results here")
    ap.add_argument("--write-doc", type=Path, default=None, help="docs/resilience.md")
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="do not run: re-render the table from a --json file of an earlier run",
    )
    args = ap.parse_args()
    if not 29000 <= args.base_port <= 29995:
        ap.error("--base-port must leave 5 ports within 29000-29999")
    cfg = Config(primary=args.primary, total=args.total, rate=args.rate,
                 concurrency=args.concurrency, warm=args.warm, fault=args.fault,
                 recover=args.recover, base_port=args.base_port, log_dir=args.log_dir,
                 replicas=args.replicas,
                 extra_env=dict(kv.split("=", 1) for kv in args.set))  # fmt: skip
    keys = None if args.scenarios == "all" else args.scenarios.split(",")
    if args.from_json:
        results = [ScenarioResult(**d) for d in json.loads(args.from_json.read_text())]
    else:
        results = asyncio.run(run_scenarios(cfg, keys))
    table = markdown_table(results, cfg)
    print(table)
    if args.json and not args.from_json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    if args.write_doc:
        argv, skip = [], False
        for a in sys.argv[1:]:  # the reproducing command: without the output options
            if skip:
                skip = False
            elif a in ("--from-json", "--write-doc", "--json", "--log-dir"):
                skip = True
            elif not a.startswith(("--from-json=", "--write-doc=", "--json=", "--log-dir=")):
                argv.append(a)
        when = args.from_json.stat().st_mtime if args.from_json else time.time()
        write_doc_section(args.write_doc, doc_section(results, cfg, argv, when))


def doc_section(results: list[ScenarioResult], cfg: Config, argv: list[str], when: float) -> str:
    cmd = ".venv/bin/python scripts/chaos/run.py " + " ".join(argv)
    lines = [
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))}; primary = "
        f"{'the real llama-server (Gemma 3 270M)' if cfg.primary == 'llamacpp' else 'a fake'}"
        f"{' x 2 replicas (the faults hit the first only)' if cfg.replicas == 2 else ''}, "
        "fallback = a fake OpenAI-compatible server through the `vllm` plugin; the load "
        f"driver's {cfg.concurrency} clients send a 50/50 mix of streaming and JSON chat "
        f"(max_tokens {cfg.max_tokens}) at {cfg.rate:g} req/s through `inference serve`. "
        f"Timeline per scenario: {cfg.warm:g}s clean, {cfg.fault:g}s fault, "
        f"{cfg.recover:g}s after recovery. Settings: HEALTH_CHECK_INTERVAL="
        f"{cfg.health_interval:g}, HEALTH_CHECK_TIMEOUT={cfg.health_timeout:g}, "
        f"INFERENCE_FIRST_TOKEN_TIMEOUT={cfg.first_token_timeout:g}, "
        f"INFERENCE_IDLE_TIMEOUT={cfg.idle_timeout:g}, "
        f"INFERENCE_REQUEST_DEADLINE={cfg.request_deadline:g}, INFERENCE_MAX_RETRIES="
        f"{cfg.max_retries}, INFERENCE_BREAKER_THRESHOLD/WINDOW/COOLDOWN="
        f"{cfg.breaker_threshold}/{cfg.breaker_window:g}/{cfg.breaker_cooldown:g}. "
        "'hung' = no answer within the deadline + 1 s; 'down/up after' = seconds from the "
        "fault (from the recovery) until `GET /v1/health/inference` showed the primary "
        "not ready (ready again), polled every 0.1 s.",
        "",
        "Reproduce:",
        "",
        "```",
        "bash scripts/peers/llamacpp.sh setup",
        cmd,
        "```",
        "",
        markdown_table(results, cfg),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
