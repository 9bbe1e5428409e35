#!/usr/bin/env python3
# ruff: noqa  (a stdlib-only harness script kept close to shared/bench/gateway-overhead)
"""Gateway-overhead benchmark driver (stdlib only; called by run.sh).

Measures OpenAI-compatible gateways against the nginx mock upstream ("direct"),
back to back in one process run, so that a noisy shared machine affects both alike.

  bench.py run    --rundir DIR --luadir DIR [--target SPEC]... [--litellm-workers "1 2"] ...
  bench.py report --rundir DIR --out RESULTS.md [--title ...]

Target SPEC (repeatable):  name=NAME,url=BASE[,model=M][,stream_model=M][,embed_model=M]
                           [,api_key=K][,pid=PID]
BASE is the gateway's base URL (with or without /v1). "direct" is always measured first:
chat+embeddings on http://127.0.0.1:18080, streaming on http://127.0.0.1:18081.
"""

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

DIRECT = "http://127.0.0.1:18080"
DIRECT_STREAM = "http://127.0.0.1:18081"
ENDPOINTS = {  # name -> (lua script, path, model key)
    "chat": ("chat.lua", "/v1/chat/completions", "model"),
    "stream": ("stream.lua", "/v1/chat/completions", "stream_model"),
    "embed": ("embed.lua", "/v1/embeddings", "embed_model"),
    "messages": ("messages.lua", "/v1/messages", "model"),
    "messages_stream": ("messages_stream.lua", "/v1/messages", "stream_model"),
    "responses": ("responses.lua", "/v1/responses", "model"),
    "responses_stream": ("responses_stream.lua", "/v1/responses", "stream_model"),
}
# translated protocol routes -> the chat route they are compared with (same gateway, same run);
# nginx (direct) has no such routes, so these run against the gateways only
PROTOCOL_EPS = {
    "messages": "chat",
    "messages_stream": "stream",
    "responses": "chat",
    "responses_stream": "stream",
}
PROTOCOL_CPU_TARGET = 1.5  # added CPU per request at most 1.5x the chat route's
LITELLM_VENV = os.environ.get("LITELLM_VENV", "/opt/peers/litellm")
HERE = Path(__file__).resolve().parent


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- process info
def proc_tree(pid):
    """pid and all descendants (via /proc/*/stat ppid)."""
    children = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(st.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_cpu_s(pid):
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def tree_cpu_s(pid):
    return sum(proc_cpu_s(p) for p in proc_tree(pid)) if pid else None


def proc_desc(pid):
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        etime = time.time() - (
            psutil_boot_time()
            + int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
            / os.sysconf("SC_CLK_TCK")
        )
        return {"pid": pid, "rss_mib": round(rss / 1024, 1), "age_s": round(etime, 1), "cmd": cmd}
    except OSError:
        return None


def psutil_boot_time():
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime"):
            return int(line.split()[1])
    return 0


def tree_desc(pid):
    return [d for d in (proc_desc(p) for p in proc_tree(pid)) if d]


# ---------------------------------------------------------------- http helpers
def split_url(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port or 80


def http_req(base, path, body=None, api_key=None, timeout=30, stream_ttfb=False):
    host, port = split_url(base)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    hdr = {"Content-Type": "application/json"}
    if api_key:
        hdr["Authorization"] = f"Bearer {api_key}"
    conn.request(
        "POST" if body is not None else "GET",
        path,
        body=json.dumps(body) if body is not None else None,
        headers=hdr,
    )
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type", ""), data


CHAT_BODY = {
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello in one short sentence."},
    ],
    "max_tokens": 64,
    "temperature": 0,
}


def sanity(t):
    """One request of each kind; check status and response shape."""
    res = {}
    try:
        st, ct, d = http_req(
            t["chat_base"],
            "/v1/chat/completions",
            dict(CHAT_BODY, model=t["model"]),
            t.get("api_key"),
        )
        j = json.loads(d) if st == 200 else {}
        ok = (
            st == 200
            and bool(j.get("choices", [{}])[0].get("message", {}).get("content"))
            and "usage" in j
        )
        res["chat"] = {
            "ok": ok,
            "status": st,
            "bytes": len(d),
            "detail": "" if ok else d[:200].decode("utf-8", "replace"),
        }
    except Exception as e:  # noqa: BLE001
        res["chat"] = {"ok": False, "status": None, "detail": repr(e)}
    try:
        st, ct, d = http_req(
            t["stream_base"],
            "/v1/chat/completions",
            dict(
                CHAT_BODY,
                model=t["stream_model"],
                stream=True,
                stream_options={"include_usage": True},
            ),
            t.get("api_key"),
        )
        events = [l for l in d.decode("utf-8", "replace").splitlines() if l.startswith("data:")]
        ok = (
            st == 200
            and "text/event-stream" in ct
            and events[-1:] == ["data: [DONE]"]
            and len(events) >= 33
            and any('"usage":{' in e for e in events)
        )
        res["stream"] = {
            "ok": ok,
            "status": st,
            "bytes": len(d),
            "events": len(events),
            "content_type": ct,
            "detail": "" if ok else d[:200].decode("utf-8", "replace"),
        }
    except Exception as e:  # noqa: BLE001
        res["stream"] = {"ok": False, "status": None, "detail": repr(e)}
    try:
        st, ct, d = http_req(
            t["chat_base"],
            "/v1/embeddings",
            {
                "model": t["embed_model"],
                "input": ["The quick brown fox", "jumps over the lazy dog"],
            },
            t.get("api_key"),
        )
        j = json.loads(d) if st == 200 else {}
        ok = (
            st == 200
            and len(j.get("data", [])) == 2
            and all(len(x.get("embedding", [])) == 384 for x in j["data"])
        )
        res["embed"] = {
            "ok": ok,
            "status": st,
            "bytes": len(d),
            "detail": "" if ok else d[:200].decode("utf-8", "replace"),
        }
    except Exception as e:  # noqa: BLE001
        res["embed"] = {"ok": False, "status": None, "detail": repr(e)}
    if t.get("kind") != "direct":
        res.update(sanity_protocols(t))
    return res


def sanity_protocols(t):
    """/v1/messages and /v1/responses, plain and streamed: status and shape."""
    res = {}
    msg = {
        "model": t["model"],
        "system": "You are a helpful assistant.",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    }
    resp = {
        "model": t["model"],
        "input": "Say hello in one short sentence.",
        "store": False,
        "max_output_tokens": 64,
    }
    cases = (
        (
            "messages",
            "/v1/messages",
            msg,
            lambda j: j.get("type") == "message" and j.get("content", [{}])[0].get("text"),
        ),
        ("messages_stream", "/v1/messages", dict(msg, model=t["stream_model"], stream=True), None),
        (
            "responses",
            "/v1/responses",
            resp,
            lambda j: j.get("object") == "response" and j.get("status") == "completed",
        ),
        (
            "responses_stream",
            "/v1/responses",
            dict(resp, model=t["stream_model"], stream=True),
            None,
        ),
    )
    for name, path, body, check in cases:
        try:
            st, ct, d = http_req(t["chat_base"], path, body, t.get("api_key"))
            if check is None:  # a stream: the last event closes it
                text = d.decode("utf-8", "replace")
                ok = (
                    st == 200
                    and "text/event-stream" in ct
                    and ("event: message_stop" in text or "event: response.completed" in text)
                )
            else:
                ok = st == 200 and bool(check(json.loads(d)))
            res[name] = {
                "ok": ok,
                "status": st,
                "bytes": len(d),
                "detail": "" if ok else d[:200].decode("utf-8", "replace"),
            }
        except Exception as e:  # noqa: BLE001
            res[name] = {"ok": False, "status": None, "detail": repr(e)}
    return res


def ttfb(t, n, max_s):
    """Streaming at c=1 over one keep-alive connection: time to first body byte and to end."""
    host, port = split_url(t["stream_base"])
    conn = http.client.HTTPConnection(host, port, timeout=30)
    hdr = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if t.get("api_key"):
        hdr["Authorization"] = f"Bearer {t['api_key']}"
    body = json.dumps(
        dict(
            CHAT_BODY, model=t["stream_model"], stream=True, stream_options={"include_usage": True}
        )
    )
    firsts, totals, errors = [], [], 0
    deadline = time.monotonic() + max_s
    for i in range(n + 5):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/chat/completions", body=body, headers=hdr)
            r = conn.getresponse()
            first = r.read(1)
            t1 = time.perf_counter()
            rest = r.read()
            t2 = time.perf_counter()
            if r.status != 200 or not first or b"[DONE]" not in rest:
                errors += 1
                continue
        except Exception:  # noqa: BLE001
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            continue
        if i >= 5:  # first 5 are warm-up
            firsts.append((t1 - t0) * 1e6)
            totals.append((t2 - t0) * 1e6)
    conn.close()
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else None  # noqa: E731
    return {
        "n": len(firsts),
        "errors": errors,
        "ttfb_p50_us": q(firsts, 50),
        "ttfb_p90_us": q(firsts, 90),
        "total_p50_us": q(totals, 50),
        "total_p90_us": q(totals, 90),
    }


# ---------------------------------------------------------------- wrk
def wrk(url, script, luadir, conns, secs, env):
    threads = max(1, min(2, conns))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{secs}s",
        "--timeout",
        "10s",
        "-s",
        str(Path(luadir) / script),
        url,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=secs + 60)
    m = re.search(r"^WRKJSON (\{.*\})$", p.stdout, re.M)
    if not m:
        return {"wrk_failed": True, "stdout": p.stdout[-500:], "stderr": p.stderr[-500:]}
    r = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    r["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    r["cmd"] = " ".join(cmd)
    return r


# ---------------------------------------------------------------- litellm
def start_litellm(rundir, workers, port, key):
    env = dict(
        os.environ,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        LITELLM_MASTER_KEY=key,
        PYTHONUNBUFFERED="1",
    )
    env.pop("DATABASE_URL", None)
    logf = open(Path(rundir) / f"litellm-w{workers}.log", "w")
    t0 = time.monotonic()
    p = subprocess.Popen(
        [
            f"{LITELLM_VENV}/bin/litellm",
            "--config",
            str(HERE / "litellm.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=rundir,
        start_new_session=True,
    )
    (Path(rundir) / f"litellm-w{workers}.pid").write_text(str(p.pid))
    return p, wait_first_200(p, port, key, t0, limit=240, poll=0.1)


def wait_first_200(p, port, key, t0, *, limit, poll):
    """Seconds from ``t0`` to the first 200 on /v1/models, or None (exited, or ``limit`` passed)."""
    while time.monotonic() - t0 < limit:
        if p.poll() is not None:
            return None
        try:
            st, _, _ = http_req(f"http://127.0.0.1:{port}", "/v1/models", None, key, timeout=2)
            if st == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(poll)
    return None


def start_cmd(rundir, name, cmd, port, env_file, key):
    """Start a gateway command (own session), wait for the first 200 on /v1/models."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if env_file:
        for line in Path(env_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip()
    env["INFERENCE_GATEWAY_PORT"] = str(port)
    if key:
        env["INFERENCE_GATEWAY_API_KEYS"] = key
    logf = open(Path(rundir) / f"{name}.log", "w")
    t0 = time.monotonic()
    p = subprocess.Popen(
        "exec " + cmd,
        shell=True,
        stdout=logf,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=rundir,
        start_new_session=True,
    )
    (Path(rundir) / f"{name}.pid").write_text(str(p.pid))
    return p, wait_first_200(p, port, key, t0, limit=60, poll=0.02)


def worker_pids(pid):
    out = set()
    for c in proc_tree(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                out.add(c)
        except OSError:
            pass
    return out


def wait_workers(pid, w, stable_s=8, max_s=120):
    """After the first 200: wait until the uvicorn worker set is complete and unchanged for stable_s.
    uvicorn's supervisor kills a worker that misses its 5 s health ping (e.g. while it is still
    importing on a loaded machine) and spawns a new one, so the first 200 can come from one worker."""
    t0 = time.monotonic()
    seen, last, changed = set(), None, time.monotonic()
    if w <= 1:
        time.sleep(3)
        return 0.0, seen
    while time.monotonic() - t0 < max_s:
        cur = worker_pids(pid)
        seen |= cur
        if cur != last:
            last, changed = cur, time.monotonic()
        elif len(cur) == w and time.monotonic() - changed >= stable_s:
            break
        time.sleep(0.5)
    return time.monotonic() - t0 - stable_s, seen


def stop_proc(p):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)  # uvicorn parent stops its own workers
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for pid in reversed(proc_tree(p.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        p.wait(timeout=10)


def idle_cpu(pid, secs=5):
    c0 = tree_cpu_s(pid)
    time.sleep(secs)
    return round(100 * (tree_cpu_s(pid) - c0) / secs, 1)


def import_times(py):
    out = {}
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [py, "-c", "import litellm"],
            check=True,
            capture_output=True,
            env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"),
        )
        walls.append(time.perf_counter() - t0)
    base = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([py, "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    out["wall_import_litellm_s"] = round(statistics.median(walls), 3)
    out["wall_python_pass_s"] = round(statistics.median(base), 3)
    for mod in ("litellm", "litellm.proxy.proxy_server"):
        p = subprocess.run(
            [py, "-X", "importtime", "-c", f"import {mod}"],
            capture_output=True,
            text=True,
            env=dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True"),
        )
        self_sum, cum_top, nmods = 0, None, 0
        for line in p.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if m:
                nmods += 1
                self_sum += int(m.group(1))
                if m.group(4) == mod and len(m.group(3)) == 1:
                    cum_top = int(m.group(2))
        out[f"importtime_{mod}"] = {
            "modules": nmods,
            "sum_self_s": round(self_sum / 1e6, 3),
            "cumulative_s": round(cum_top / 1e6, 3) if cum_top else None,
        }
    return out


# ---------------------------------------------------------------- versions
def versions():
    v = {}

    def sh(cmd):
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        return (p.stdout + p.stderr).strip()

    v["nginx"] = sh("nginx -v")
    v["wrk"] = sh("wrk -v | head -1")
    v["python_system"] = sh("python3 --version")
    if Path(f"{LITELLM_VENV}/bin/python").exists():
        v["python_litellm_venv"] = sh(f"{LITELLM_VENV}/bin/python --version")
        v["litellm_venv_packages"] = sh(
            f'{LITELLM_VENV}/bin/python -c "import importlib.metadata as m;'
            f"print(' '.join(f'{{p}}=={{m.version(p)}}' for p in "
            f"['litellm','uvicorn','fastapi','starlette','httpx','aiohttp','openai','uvloop','pydantic','orjson']))\""
        )
    v["kernel"] = platform.release()
    v["debian"] = (
        Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists()
        else ""
    )
    cpu = [l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")]
    v["cpu"] = f"{len(cpu)} x {cpu[0].split(':', 1)[1].strip()}" if cpu else ""
    v["mem"] = [
        l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")
    ][0]
    return v


# ---------------------------------------------------------------- run
def parse_target(spec):
    d = dict(kv.split("=", 1) for kv in spec.split(","))
    base = d["url"].rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    t = {
        "name": d["name"],
        "chat_base": base,
        "stream_base": base,
        "model": d.get("model", "mock-chat"),
        "stream_model": d.get("stream_model", "mock-stream"),
        "embed_model": d.get("embed_model", "mock-embed"),
        "api_key": d.get("api_key") or None,
        "pid": int(d["pid"]) if d.get("pid") else None,
        "kind": "gateway",
    }
    return t


def cmd_run(a):
    rundir = Path(a.rundir)
    rundir.mkdir(parents=True, exist_ok=True)
    res_path = rundir / "results.jsonl"
    res = open(res_path, "w")

    def emit(rec):
        rec["ts"] = time.time()
        res.write(json.dumps(rec) + "\n")
        res.flush()

    shown = dict(
        vars(a), target=[re.sub(r"api_key=[^,]*", "api_key=<redacted>", t) for t in a.target]
    )
    emit({"type": "meta", "versions": versions(), "args": shown, "loadavg": loadavg()})
    nginx_pid = int(Path(a.nginx_pidfile).read_text()) if a.nginx_pidfile else None
    targets = [
        {
            "name": "direct",
            "chat_base": DIRECT,
            "stream_base": DIRECT_STREAM,
            "model": "mock-chat",
            "stream_model": "mock-stream",
            "embed_model": "mock-embed",
            "api_key": None,
            "pid": nginx_pid,
            "kind": "direct",
        }
    ]
    procs = []
    try:
        key = "sk-bench-" + secrets.token_hex(24)
        if a.litellm_workers.strip():
            py = f"{LITELLM_VENV}/bin/python"
            if not a.skip_import_times:
                log("measuring litellm import time ...")
                emit(
                    {"type": "import", "name": "litellm", "loadavg": loadavg(), **import_times(py)}
                )
            for i, w in enumerate(int(x) for x in a.litellm_workers.split()):
                port = 4000 + i
                log(f"starting litellm --num_workers {w} on :{port} ...")
                la = loadavg()
                p, startup = start_litellm(rundir, w, port, key)
                procs.append(p)
                if startup is None:
                    log(f"litellm w{w} did not come up; see {rundir}/litellm-w{w}.log")
                    emit(
                        {
                            "type": "startup",
                            "name": f"litellm-w{w}",
                            "startup_s": None,
                            "loadavg": la,
                        }
                    )
                    continue
                log(f"  first 200 after {startup:.2f}s")
                settled, seen = wait_workers(p.pid, w)
                log(
                    f"  workers settled after {settled:.1f}s more; worker pids seen: {sorted(seen)}"
                )
                emit(
                    {
                        "type": "startup",
                        "name": f"litellm-w{w}",
                        "startup_s": round(startup, 2),
                        "workers": w,
                        "port": port,
                        "loadavg": la,
                        "procs": tree_desc(p.pid),
                        "settle_s": round(settled, 1),
                        "worker_pids_seen": sorted(seen),
                        "worker_restarts": max(0, len(seen) - w) if w > 1 else 0,
                    }
                )
                targets.append(
                    {
                        "name": f"litellm-w{w}",
                        "chat_base": f"http://127.0.0.1:{port}",
                        "stream_base": f"http://127.0.0.1:{port}",
                        "model": "mock-chat",
                        "stream_model": "mock-stream",
                        "embed_model": "mock-embed",
                        "api_key": key,
                        "pid": p.pid,
                        "kind": "gateway",
                    }
                )
        targets += [parse_target(s) for s in a.target]
        if a.start_cmd:
            name, port = a.start_name, a.start_port
            log(f"starting {name}: {a.start_cmd} (port {port}) ...")
            la = loadavg()
            p, startup = start_cmd(rundir, name, a.start_cmd, port, a.start_env, key)
            procs.append(p)
            if startup is None:
                log(f"{name} did not come up; see {rundir}/{name}.log")
                emit({"type": "startup", "name": name, "startup_s": None, "loadavg": la})
                raise SystemExit(1)
            log(f"  first 200 after {startup:.2f}s")
            time.sleep(1)
            emit(
                {
                    "type": "startup",
                    "name": name,
                    "startup_s": round(startup, 2),
                    "workers": 1,
                    "port": port,
                    "loadavg": la,
                    "procs": tree_desc(p.pid),
                    "settle_s": 0.0,
                    "worker_pids_seen": [],
                    "worker_restarts": 0,
                }
            )
            targets.append(
                {
                    "name": name,
                    "chat_base": f"http://127.0.0.1:{port}",
                    "stream_base": f"http://127.0.0.1:{port}",
                    "model": "mock-chat",
                    "stream_model": "mock-stream",
                    "embed_model": "mock-embed",
                    "api_key": key,
                    "pid": p.pid,
                    "kind": "gateway",
                }
            )

        # sanity + idle cpu
        for t in targets:
            s = sanity(t)
            emit({"type": "sanity", "name": t["name"], "checks": s})
            log(
                f"sanity {t['name']}: "
                + " ".join(f"{k}={'ok' if v['ok'] else 'FAIL'}" for k, v in s.items())
            )
            if t["pid"]:
                emit({"type": "idle_cpu", "name": t["name"], "cpu_pct": idle_cpu(t["pid"], 3)})

        eps = a.endpoints.split()
        conns = [int(c) for c in a.conns.split()]
        env = dict(os.environ, BENCH_LUA_DIR=a.luadir)
        for rep in range(1, a.reps + 1):
            la = loadavg()
            log(f"=== rep {rep}/{a.reps} loadavg {' '.join(la)}")
            emit({"type": "rep", "rep": rep, "loadavg": la})
            for ep in eps:
                script, path, mkey = ENDPOINTS[ep]
                for c in conns:
                    for t in targets:
                        if ep in PROTOCOL_EPS and t["kind"] == "direct":
                            continue
                        base = t["stream_base"] if ep == "stream" else t["chat_base"]
                        e = dict(env, MODEL=t[mkey], API_KEY=t["api_key"] or "")
                        if a.warmup > 0:
                            wrk(base + path, script, a.luadir, c, a.warmup, e)
                        la = loadavg()
                        c0 = tree_cpu_s(t["pid"]) if t["pid"] else None
                        r = wrk(base + path, script, a.luadir, c, a.duration, e)
                        c1 = tree_cpu_s(t["pid"]) if t["pid"] else None
                        r.update(
                            {
                                "type": "wrk",
                                "rep": rep,
                                "endpoint": ep,
                                "conns": c,
                                "name": t["name"],
                                "loadavg": la,
                            }
                        )
                        if c0 is not None and r.get("requests"):
                            r["cpu_s"] = round(c1 - c0, 3)
                            r["cpu_us_per_req"] = round((c1 - c0) * 1e6 / r["requests"], 1)
                        emit(r)
                        if r.get("wrk_failed"):
                            log(f"  {ep:6s} c={c:<3d} {t['name']:12s} WRK FAILED {r.get('stderr')}")
                        else:
                            log(
                                f"  {ep:6s} c={c:<3d} {t['name']:12s} rps={r['rps']:9.1f} "
                                f"p50={r['p50_us'] / 1000:8.2f}ms p99={r['p99_us'] / 1000:8.2f}ms "
                                f"err={r['err_status'] + r['err_connect'] + r['err_read'] + r['err_write'] + r['err_timeout']} "
                                f"cpu/req={r.get('cpu_us_per_req', '-')}us"
                            )
            if "stream" in eps and a.ttfb_n > 0:
                for t in targets:
                    r = ttfb(t, a.ttfb_n, a.ttfb_max_s)
                    r.update({"type": "ttfb", "rep": rep, "name": t["name"], "loadavg": loadavg()})
                    emit(r)
                    log(
                        f"  ttfb   c=1   {t['name']:12s} ttfb_p50={(r['ttfb_p50_us'] or 0) / 1000:.2f}ms "
                        f"total_p50={(r['total_p50_us'] or 0) / 1000:.2f}ms n={r['n']} err={r['errors']}"
                    )
        for t in targets:
            if t["pid"] and t["kind"] == "gateway":
                emit(
                    {
                        "type": "rss_after",
                        "name": t["name"],
                        "procs": tree_desc(t["pid"]),
                        "worker_pids": sorted(worker_pids(t["pid"])),
                    }
                )
    finally:
        for p in procs:
            stop_proc(p)
        emit({"type": "end", "loadavg": loadavg()})
        res.close()
    log(f"raw results: {res_path}")


# ---------------------------------------------------------------- report
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_ms(us, nd=2):
    return "-" if us is None else f"{us / 1000:.{nd}f}"


def cmd_report(a):
    recs = [json.loads(l) for l in open(Path(a.rundir) / "results.jsonl")]
    meta = next(r for r in recs if r["type"] == "meta")
    wrks = [r for r in recs if r["type"] == "wrk" and not r.get("wrk_failed")]
    failed = [r for r in recs if r["type"] == "wrk" and r.get("wrk_failed")]
    names = []
    for r in wrks:
        if r["name"] not in names:
            names.append(r["name"])
    gws = [n for n in names if n != "direct"]
    eps = [e for e in ENDPOINTS if any(r["endpoint"] == e for r in wrks)]
    conns = sorted({r["conns"] for r in wrks})
    reps = sorted({r["rep"] for r in wrks})
    args = meta["args"]

    def get(name, ep, c, rep):
        for r in wrks:
            if (r["name"], r["endpoint"], r["conns"], r["rep"]) == (name, ep, c, rep):
                return r
        return None

    L = []
    w = L.append
    w(f"# {a.title}\n")
    endts = next((r["ts"] for r in recs if r["type"] == "end"), meta["ts"])
    w(
        f"Measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(meta['ts']))} to "
        f"{time.strftime('%H:%M %Z', time.localtime(endts))}. "
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `bench.py report` from `{a.rundir}/results.jsonl`"
        f" (raw copy: `{a.raw_name}`).\n"
    )
    # Only this run's own output goes in: the wrk self-check it ran (run.sh writes it into the run
    # directory). Free-form prose (findings, pitfalls) is never copied in: written for another
    # run, it contradicted the tables below. Background on the anchor is linked, not quoted.
    if any(g.startswith("litellm") for g in gws):
        w(
            "How the LiteLLM anchor is run, and the pitfalls met setting it up: `bench/notes-litellm.md` "
            "(background, not measured in this run).\n"
        )
    wrkcheck = Path(a.rundir) / "wrkcheck.txt"
    if wrkcheck.is_file():
        w("## wrk self-check\n")
        w(wrkcheck.read_text().strip() + "\n")
    w("## Setup\n")
    v = meta["versions"]
    w("| item | value |\n|---|---|")
    for k in (
        "litellm_venv_packages",
        "python_litellm_venv",
        "python_system",
        "nginx",
        "wrk",
        "debian",
        "kernel",
        "cpu",
        "mem",
    ):
        if k in v:
            w(f"| {k} | `{v[k]}` |")
    w("")
    w(
        f"- Each measurement: `wrk -t{{min(2,c)}} -c{{c}} -d{args['duration']}s --timeout 10s` after a "
        f"{args['warmup']} s warm-up run at the same concurrency; {len(reps)} repetitions; in every repetition, "
        f"for each (endpoint, c), direct then each gateway back to back. Tables show the **median over repetitions**; "
        f"ratios/overheads are computed per repetition (paired with that repetition's direct run) and then the median is taken."
    )
    w(
        "- Mock upstream: nginx, 1 worker, static bodies: chat.completion 662 B; SSE 32 `chat.completion.chunk` "
        "events + usage chunk + `[DONE]` (10.3 KB); embeddings 2x384 floats (9.7 KB)."
    )
    w(
        f"- `cpu us/req` = CPU time (user+sys) of the server's whole process tree during the {args['duration']} s run / requests "
        "(nginx for direct). It is the least noise-sensitive number on a shared machine."
    )
    w(
        "- Everything (wrk, nginx, gateway) shares the same 2 cores, so throughput at c>=16 is CPU-bound for "
        "every party, wrk included.\n"
    )

    w("### Load average during runs\n")
    w("| when | loadavg (1/5/15 min) |\n|---|---|")
    w(f"| start | {' '.join(meta['loadavg'])} |")
    for r in recs:
        if r["type"] == "rep":
            w(f"| start of rep {r['rep']} | {' '.join(r['loadavg'])} |")
    end = [r for r in recs if r["type"] == "end"]
    if end:
        w(f"| end | {' '.join(end[0]['loadavg'])} |")
    l1 = [float(r["loadavg"][0]) for r in wrks]
    if l1:
        w(
            f"\nPer-measurement 1-min loadavg: min {min(l1):.2f}, median {statistics.median(l1):.2f}, "
            f"max {max(l1):.2f} (a value above ~2 means other processes competed for the 2 cores).\n"
        )

    # overhead summary
    w("## Overhead summary (gateway vs direct)\n")
    w(
        "Latency overhead at c=1 = gateway latency - direct latency (ms). Throughput ratio = gateway RPS / direct RPS.\n"
    )
    hdr = "| gateway | endpoint | +p50 ms c=1 | +p90 ms c=1 | +p99 ms c=1 |"
    sep = "|---|---|---|---|---|"
    hi = [c for c in conns if c > 1]
    for c in hi:
        hdr += f" RPS c={c} | ratio c={c} |"
        sep += "---|---|"
    hdr += " gw cpu us/req (c=%d) | errors |" % (hi[-1] if hi else conns[-1])
    sep += "---|---|"
    w(hdr)
    w(sep)
    for g in gws:
        for ep in eps:
            if ep in PROTOCOL_EPS:
                continue  # no direct route to compare with: see the protocol table
            row = f"| {g} | {ep} |"
            for pk in ("p50_us", "p90_us", "p99_us"):
                if 1 in conns:
                    diffs = [
                        get(g, ep, 1, rp)[pk] - get("direct", ep, 1, rp)[pk]
                        for rp in reps
                        if get(g, ep, 1, rp) and get("direct", ep, 1, rp)
                    ]
                    row += f" {fmt_ms(med(diffs))} |"
                else:
                    row += " - |"
            for c in hi:
                rps = med([get(g, ep, c, rp)["rps"] for rp in reps if get(g, ep, c, rp)])
                ratios = [
                    get(g, ep, c, rp)["rps"] / get("direct", ep, c, rp)["rps"]
                    for rp in reps
                    if get(g, ep, c, rp) and get("direct", ep, c, rp)
                ]
                row += f" {rps:.0f} | {med(ratios):.4f} |" if rps is not None else " - | - |"
            cc = hi[-1] if hi else conns[-1]
            cpu = med(
                [get(g, ep, cc, rp).get("cpu_us_per_req") for rp in reps if get(g, ep, cc, rp)]
            )
            errs = sum(
                r["err_status"]
                + r["err_connect"]
                + r["err_read"]
                + r["err_write"]
                + r["err_timeout"]
                for r in wrks
                if r["name"] == g and r["endpoint"] == ep
            )
            row += f" {'-' if cpu is None else f'{cpu:.0f}'} | {errs} |"
            w(row)
    w("")

    # ratios against the anchor (same run)
    anchor = "litellm-w1" if "litellm-w1" in gws else None
    others = [g for g in gws if not g.startswith("litellm")]
    if anchor and others and 64 in conns:
        tt = [r for r in recs if r["type"] == "ttfb"]
        st_by = {r["name"]: r for r in recs if r["type"] == "startup"}
        aft = {r["name"]: r["procs"] for r in recs if r["type"] == "rss_after"}

        def cpu(g, ep):
            return med(
                [get(g, ep, 64, rp).get("cpu_us_per_req") for rp in reps if get(g, ep, 64, rp)]
            )

        def added(g, ep, key="p50_us"):
            return med(
                [
                    get(g, ep, 1, rp)[key] - get("direct", ep, 1, rp)[key]
                    for rp in reps
                    if get(g, ep, 1, rp) and get("direct", ep, 1, rp)
                ]
            )

        def rps_ratio(g, ep):
            return med(
                [
                    get(g, ep, 64, rp)["rps"] / get(anchor, ep, 64, rp)["rps"]
                    for rp in reps
                    if get(g, ep, 64, rp) and get(anchor, ep, 64, rp)
                ]
            )

        def ttfb_added(g):
            vals = []
            for rp in reps:
                x = next((r for r in tt if r["name"] == g and r["rep"] == rp), None)
                d = next((r for r in tt if r["name"] == "direct" and r["rep"] == rp), None)
                if x and d and x.get("ttfb_p50_us") and d.get("ttfb_p50_us"):
                    vals.append(x["ttfb_p50_us"] - d["ttfb_p50_us"])
            return med(vals)

        for g in others:
            w(f"## {g} vs {anchor} (same run)\n")
            w("| measure | endpoint | " + g + " | " + anchor + " | ratio | target | met |")
            w("|---|---|---|---|---|---|---|")
            for ep, target in (("chat", 20), ("stream", 25), ("embed", None)):
                if ep not in eps:
                    continue
                o, l_ = cpu(g, ep), cpu(anchor, ep)
                if o and l_:
                    ratio = l_ / o
                    tgt = f"<= 1/{target} of anchor" if target else "-"
                    met = "-" if not target else ("yes" if ratio >= target else "NO")
                    w(
                        f"| gateway CPU us/req (c=64) | {ep} | {o:.0f} | {l_:.0f} | 1/{ratio:.1f} | {tgt} | {met} |"
                    )
            for ep in eps:
                o, l_ = added(g, ep), added(anchor, ep)
                if o is not None and l_ is not None:
                    # the whole-stream latency has no target of its own: TTFB is the stream's
                    met = "yes" if o < 500 else "NO"
                    if ep == "stream":
                        w(
                            f"| added p50 latency at c=1, ms (whole stream) | {ep} | {o / 1000:.3f} | "
                            f"{l_ / 1000:.2f} | {(l_ / o) if o > 0 else float('inf'):.0f}x lower | - | - |"
                        )
                        continue
                    w(
                        f"| added p50 latency at c=1, ms | {ep} | {o / 1000:.3f} | {l_ / 1000:.2f} | "
                        f"{(l_ / o) if o > 0 else float('inf'):.0f}x lower | < 0.5 ms | {met} |"
                    )
            o, l_ = ttfb_added(g), ttfb_added(anchor)
            if o is not None and l_ is not None:
                w(
                    f"| added TTFB p50 at c=1, ms | stream | {o / 1000:.3f} | {l_ / 1000:.2f} | "
                    f"{(l_ / o) if o > 0 else float('inf'):.0f}x lower | < 0.5 ms | {'yes' if o < 500 else 'NO'} |"
                )
            for ep in eps:
                rr = rps_ratio(g, ep)
                if rr is not None:
                    o_r = med([get(g, ep, 64, rp)["rps"] for rp in reps if get(g, ep, 64, rp)])
                    l_r = med(
                        [get(anchor, ep, 64, rp)["rps"] for rp in reps if get(anchor, ep, 64, rp)]
                    )
                    errs = sum(
                        r["err_status"]
                        + r["err_connect"]
                        + r["err_read"]
                        + r["err_write"]
                        + r["err_timeout"]
                        + r.get("non2xx", 0)
                        for r in wrks
                        if r["name"] == g and r["endpoint"] == ep
                    )
                    met = "yes" if rr >= 15 and errs == 0 else "NO"
                    w(
                        f"| RPS at c=64 (errors: {errs}) | {ep} | {o_r:.0f} | {l_r:.0f} | {rr:.1f}x | >= 15x, 0 errors | {met} |"
                    )
            if g in st_by and anchor in st_by and st_by[g]["startup_s"]:
                o, l_ = st_by[g]["startup_s"], st_by[anchor]["startup_s"]
                w(
                    f"| start to first 200, s | - | {o:.2f} | {l_} | {l_ / o:.0f}x faster | < 1.5 s | {'yes' if o < 1.5 else 'NO'} |"
                )
            if g in aft and anchor in aft:
                o = sum(p["rss_mib"] for p in aft[g])
                l_ = sum(p["rss_mib"] for p in aft[anchor])
                w(
                    f"| RSS after the benchmark, MiB | - | {o:.0f} | {l_:.0f} | {l_ / o:.1f}x smaller | < 100 MiB | {'yes' if o < 100 else 'NO'} |"
                )
            w("")

    # translated protocols vs the same gateway's chat route
    peps = [e for e in eps if e in PROTOCOL_EPS]
    if peps:
        cc = max(conns)
        w(f"## Protocol routes vs the chat route (same gateway, same run)\n")
        w(
            f"Added CPU per request of `/v1/messages` and `/v1/responses` (translated to chat "
            f"completions) against the same gateway's chat route on the same mock body: "
            f"target at most {PROTOCOL_CPU_TARGET}x. Latency: p50 at c=1 minus the chat route's.\n"
        )
        w(
            f"| gateway | route | compared with | cpu us/req c={cc} | chat's | ratio | target | met "
            f"| +p50 ms c=1 vs chat | errors |"
        )
        w("|---|---|---|---|---|---|---|---|---|---|")
        for g in gws:
            for ep in peps:
                base_ep = PROTOCOL_EPS[ep]
                o = med(
                    [get(g, ep, cc, rp).get("cpu_us_per_req") for rp in reps if get(g, ep, cc, rp)]
                )
                b = med(
                    [
                        get(g, base_ep, cc, rp).get("cpu_us_per_req")
                        for rp in reps
                        if get(g, base_ep, cc, rp)
                    ]
                )
                ratio = (o / b) if o and b else None
                met = "-" if ratio is None else ("yes" if ratio <= PROTOCOL_CPU_TARGET else "NO")
                lat = med(
                    [
                        get(g, ep, 1, rp)["p50_us"] - get(g, base_ep, 1, rp)["p50_us"]
                        for rp in reps
                        if get(g, ep, 1, rp) and get(g, base_ep, 1, rp)
                    ]
                )
                errs = sum(
                    r["err_status"]
                    + r["err_connect"]
                    + r["err_read"]
                    + r["err_write"]
                    + r["err_timeout"]
                    for r in wrks
                    if r["name"] == g and r["endpoint"] == ep
                )
                w(
                    f"| {g} | {ep} | {base_ep} | {'-' if o is None else f'{o:.0f}'} | "
                    f"{'-' if b is None else f'{b:.0f}'} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
                    f"<= {PROTOCOL_CPU_TARGET}x | {met} | {fmt_ms(lat, 3)} | {errs} |"
                )
        w("")

    # detail tables
    w("## Detail per endpoint (medians over repetitions)\n")
    for ep in eps:
        w(f"### {ep}\n")
        w(
            "| target | c | RPS | p50 ms | p90 ms | p99 ms | cpu us/req | non-2xx | socket errors | RPS per rep |"
        )
        w("|---|---|---|---|---|---|---|---|---|---|")
        for c in conns:
            for n in names:
                rs = [get(n, ep, c, rp) for rp in reps]
                rs = [r for r in rs if r]
                if not rs:
                    continue
                cpu = med([r.get("cpu_us_per_req") for r in rs])
                w(
                    f"| {n} | {c} | {med([r['rps'] for r in rs]):.1f} | {fmt_ms(med([r['p50_us'] for r in rs]), 3)} | "
                    f"{fmt_ms(med([r['p90_us'] for r in rs]), 3)} | {fmt_ms(med([r['p99_us'] for r in rs]), 3)} | "
                    f"{'-' if cpu is None else f'{cpu:.0f}'} | {sum(r['err_status'] for r in rs)} | "
                    f"{sum(r['err_connect'] + r['err_read'] + r['err_write'] + r['err_timeout'] for r in rs)} | "
                    f"{' / '.join('%.0f' % r['rps'] for r in rs)} |"
                )
        w("")
    if failed:
        w(
            f"**{len(failed)} wrk runs failed** (no output parsed): "
            + ", ".join(f"{r['name']}/{r['endpoint']}/c={r['conns']}/rep{r['rep']}" for r in failed)
            + "\n"
        )

    tt = [r for r in recs if r["type"] == "ttfb"]
    if tt:
        w(
            "## Streaming at c=1: time to first body byte (Python http.client, keep-alive, 5 warm-up requests)\n"
        )
        w(
            "| target | TTFB p50 ms | TTFB p90 ms | full stream p50 ms | +TTFB p50 vs direct | +full p50 vs direct | n/rep | errors |"
        )
        w("|---|---|---|---|---|---|---|---|")
        tnames = []
        for r in tt:
            if r["name"] not in tnames:
                tnames.append(r["name"])

        def tget(n, rp):
            return next((r for r in tt if r["name"] == n and r["rep"] == rp), None)

        for n in tnames:
            rs = [tget(n, rp) for rp in reps if tget(n, rp)]
            dt = [
                tget(n, rp)["ttfb_p50_us"] - tget("direct", rp)["ttfb_p50_us"]
                for rp in reps
                if tget(n, rp)
                and tget("direct", rp)
                and tget(n, rp)["ttfb_p50_us"]
                and tget("direct", rp)["ttfb_p50_us"]
            ]
            dtot = [
                tget(n, rp)["total_p50_us"] - tget("direct", rp)["total_p50_us"]
                for rp in reps
                if tget(n, rp)
                and tget("direct", rp)
                and tget(n, rp)["total_p50_us"]
                and tget("direct", rp)["total_p50_us"]
            ]
            w(
                f"| {n} | {fmt_ms(med([r['ttfb_p50_us'] for r in rs]), 3)} | {fmt_ms(med([r['ttfb_p90_us'] for r in rs]), 3)} | "
                f"{fmt_ms(med([r['total_p50_us'] for r in rs]), 3)} | {'-' if n == 'direct' else fmt_ms(med(dt), 3)} | "
                f"{'-' if n == 'direct' else fmt_ms(med(dtot), 3)} | {rs[0]['n'] if rs else '-'} | {sum(r['errors'] for r in rs)} |"
            )
        w("")

    # gateway process facts
    st = [r for r in recs if r["type"] == "startup"]
    imp = [r for r in recs if r["type"] == "import"]
    idle = {r["name"]: r["cpu_pct"] for r in recs if r["type"] == "idle_cpu"}
    after = {r["name"]: r["procs"] for r in recs if r["type"] == "rss_after"}
    if st or imp or after:
        w("## Gateway process facts\n")
    if st:
        w(
            "| gateway | startup to first 200 (s) | +s until all workers settled | worker restarts seen after first 200 | worker pids changed during bench | loadavg at start | processes after startup (RSS MiB, age s) | RSS after the benchmark (MiB) | idle CPU % |"
        )
        w("|---|---|---|---|---|---|---|---|---|")
        for r in st:
            procs = r.get("procs", [])
            desc = "; ".join(
                f"{'worker' if 'spawn_main' in p['cmd'] else 'tracker' if 'resource_tracker' in p['cmd'] else 'main'}"
                f" {p['rss_mib']:.0f} MiB (age {p['age_s']:.0f}s)"
                for p in procs
            )
            aft = "; ".join(f"{p['rss_mib']:.0f}" for p in after.get(r["name"], []))
            tot = sum(p["rss_mib"] for p in after.get(r["name"], []))
            aw = next(
                (
                    x.get("worker_pids")
                    for x in recs
                    if x["type"] == "rss_after" and x["name"] == r["name"]
                ),
                None,
            )
            bw = sorted(p["pid"] for p in procs if "spawn_main" in p["cmd"])
            chg = "-" if aw is None or r.get("workers", 1) <= 1 else ("yes" if aw != bw else "no")
            w(
                f"| {r['name']} | {r['startup_s']} | {r.get('settle_s', '-')} | {r.get('worker_restarts', '-')} | {chg} | {' '.join(r['loadavg'])} | {desc} | {aft} (total {tot:.0f}) | {idle.get(r['name'], '-')} |"
            )
        w("")
    for g in [x for x in after if x not in {r["name"] for r in st}]:
        tot = sum(p["rss_mib"] for p in after[g])
        w(
            f"- {g}: RSS after the benchmark {'; '.join('%.0f' % p['rss_mib'] for p in after[g])} MiB (total {tot:.0f}); idle CPU {idle.get(g, '-')} %\n"
        )
    if imp:
        r = imp[0]
        w(f"Import cost (loadavg {' '.join(r['loadavg'])}):\n")
        w(
            f"- `time python -c 'import litellm'`: median {r['wall_import_litellm_s']} s wall "
            f"(interpreter alone `python -c pass`: {r['wall_python_pass_s']} s)"
        )
        for mod in ("litellm", "litellm.proxy.proxy_server"):
            x = r[f"importtime_{mod}"]
            w(
                f"- `python -X importtime -c 'import {mod}'`: {x['modules']} modules, cumulative {x['cumulative_s']} s "
                f"(sum of self times {x['sum_self_s']} s)"
            )
        w("")

    san = [r for r in recs if r["type"] == "sanity"]
    if san:
        w("## Response sanity checks (one request each, before the load runs)\n")
        keys = ["chat", "stream", "embed"] + [
            k for k in PROTOCOL_EPS if any(k in r["checks"] for r in san)
        ]
        w("| target | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
        for r in san:
            c = r["checks"]

            def f(k):
                x = c.get(k, {})
                s = "ok" if x.get("ok") else f"FAIL {x.get('status')} {x.get('detail', '')[:80]}"
                if k == "stream" and "events" in x:
                    s += f" ({x['events']} data: lines, {x.get('bytes')} B)"
                elif "bytes" in x:
                    s += f" ({x['bytes']} B)"
                return s

            w(f"| {r['name']} | " + " | ".join(f(k) if k in c else "-" for k in keys) + " |")
        w("")
    Path(a.out).write_text("\n".join(L) + "\n")
    print(f"wrote {a.out}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--rundir", required=True)
    r.add_argument("--luadir", default=str(HERE / "lua"))
    r.add_argument("--nginx-pidfile")
    r.add_argument("--target", action="append", default=[])
    r.add_argument("--litellm-workers", default="1 2")
    r.add_argument(
        "--endpoints",
        default="chat stream embed messages messages_stream responses responses_stream",
    )
    r.add_argument("--conns", default="1 16 64")
    r.add_argument("--duration", type=int, default=10)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--ttfb-n", type=int, default=100)
    r.add_argument("--ttfb-max-s", type=float, default=15)
    r.add_argument("--skip-import-times", action="store_true")
    r.add_argument("--start-cmd", help="start this gateway (shell command) and measure it")
    r.add_argument("--start-name", default="inference-core")
    r.add_argument("--start-port", type=int, default=8000)
    r.add_argument("--start-env", help="KEY=VALUE file added to the started gateway's env")
    p = sub.add_parser("report")
    p.add_argument("--rundir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="Gateway overhead benchmark")
    p.add_argument("--raw-name", default="results.jsonl")
    a = ap.parse_args()
    {"run": cmd_run, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
