"""Stream resume against TWO REAL llama.cpp servers, replicas of one backend, with the official
``openai`` SDK streaming through the gateway.

The test owns both ``llama-server`` processes.  While a long answer streams, it SIGKILLs the one
serving it: the client still receives one complete answer (one id, one model, one role, one
finish_reason, usage, ``[DONE]`` at the real end, checked on the bytes the SDK received), and
its text is exactly what the first leg produced up to the kill plus what the second replica
produced (both legs' upstream bytes are captured by a recording transport under the router's
own pooled client).  Served through the ``openai`` plugin, which cannot continue an assistant
message, the same kill ends the stream with today's in-band error and no ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .conftest import RunningGateway, _start, peer_url

pytestmark = [pytest.mark.llamacpp]

ALIAS = "gemma-3-270m"
PROMPT = [
    {
        "role": "user",
        "content": "Count from one to one hundred in words, separated by commas. "
        "Do not stop early.",
    }
]
KILL_AFTER = 12  # content chunks the client has received when the serving replica is killed


# ------------------------------------------------------------------------------ recorders


class _Tee(httpx.AsyncByteStream):
    def __init__(self, inner: Any, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    async def __aiter__(self):
        async for part in self.inner:
            self.sink.extend(part)
            yield part

    async def aclose(self) -> None:
        await self.inner.aclose()


class Recording(httpx.AsyncBaseTransport):
    """The production transport, keeping every generation request's body and response bytes."""

    def __init__(self) -> None:
        from inference_core.http.transport import FastHTTPTransport

        self.inner = FastHTTPTransport()
        self.legs: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/completions"):
            leg = {
                "port": request.url.port,
                "body": json.loads(request.content),
                "raw": bytearray(),
            }
            self.legs.append(leg)
            response.stream = _Tee(response.stream, leg["raw"])
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _SyncTee(httpx.SyncByteStream):
    def __init__(self, inner: Any, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    def __iter__(self):
        for part in self.inner:
            self.sink.extend(part)
            yield part

    def close(self) -> None:
        self.inner.close()


class ClientBytes(httpx.BaseTransport):
    """What the SDK received, byte for byte."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.raw = bytearray()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.stream = _SyncTee(response.stream, self.raw)
        return response


def events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON events of an SSE body as the relay parses them (a complete trailing one too)."""
    out = []
    for block in bytes(raw).replace(b"\r\n", b"\n").split(b"\n\n"):
        block = block.strip()
        if not block.startswith(b"data: ") or block == b"data: [DONE]":
            continue
        with contextlib.suppress(json.JSONDecodeError):  # cut by the kill: never relayed
            out.append(json.loads(block[6:]))
    return out


def contents(evs: list[dict[str, Any]]) -> list[str]:
    """The text of each event that has some (chat deltas, or completion texts)."""
    out = []
    for e in evs:
        if not e.get("choices"):
            continue
        choice = e["choices"][0]
        text = choice["delta"].get("content") if "delta" in choice else choice.get("text")
        if text:
            out.append(text)
    return out


# ------------------------------------------------------------------------------ servers


@pytest.fixture
def two_llama_servers(tmp_path: Any) -> Iterator[list[Any]]:
    """Two llama-servers of our own (the peers' assets), 1 thread each."""
    peer_url("INFERENCE_TEST_LLAMACPP_URL", "bash scripts/peers/llamacpp.sh start PORT")
    from inference_core.http import create_client
    from inference_llamacpp import provision
    from inference_llamacpp.managed import ManagedServer, ServerSpec

    spec = ServerSpec(
        binary=provision.ensure_llama_server(progress=lambda _m: None),
        model=provision.ensure_default_model(progress=lambda _m: None),
        alias=ALIAS,
        threads=1,
        chat_template=provision.ensure_chat_template(),
    )
    servers = [ManagedServer(spec, tmp_path / f"s{i}") for i in range(2)]
    for s in servers:
        s.log_dir.mkdir(parents=True, exist_ok=True)

    async def start() -> None:
        async with create_client() as http:
            await asyncio.gather(*(s.start(http, timeout=90) for s in servers))

    asyncio.run(start())
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


def gateway(env: dict[str, str]) -> tuple[RunningGateway, Recording]:
    from inference_core.gateway import GatewaySettings, create_app
    from inference_core.router import Router

    recording = Recording()
    router = Router.from_env(env, env_file=None, transport=recording)
    settings = GatewaySettings.from_env(env={})
    app = create_app(router, settings)
    server, thread, port = _start(app, settings)
    return RunningGateway(f"http://127.0.0.1:{port}", router, app, server, thread), recording


def stream_and_kill(
    gw: RunningGateway, recording: Recording, servers: list[Any], max_tokens: int = 400
):
    """Stream a long answer with the SDK; SIGKILL the serving replica after KILL_AFTER chunks."""
    seen = ClientBytes()
    client = openai.OpenAI(
        base_url=gw.base_url,
        api_key="unused",
        max_retries=0,
        timeout=120,
        http_client=httpx.Client(transport=seen, timeout=120),
    )
    chunks: list[Any] = []
    killed: list[Any] = []
    error: BaseException | None = None
    try:
        for chunk in client.chat.completions.create(
            model=ALIAS,
            messages=PROMPT,
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ):
            chunks.append(chunk)
            texts = [c for c in chunks if c.choices and c.choices[0].delta.content]
            if not killed and len(texts) == KILL_AFTER:
                port = recording.legs[0]["port"]
                victim = next(s for s in servers if s.port == port)
                os.kill(victim.pid, signal.SIGKILL)
                victim.process.wait(5)
                killed.append(victim)
    except openai.APIError as exc:
        error = exc
    assert killed, f"the answer ended before {KILL_AFTER} chunks: {chunks}"
    return chunks, bytes(seen.raw), killed[0], error


# ------------------------------------------------------------------------------ tests


def test_a_replica_killed_mid_stream_is_invisible_to_the_client(two_llama_servers):
    servers = two_llama_servers
    gw, recording = gateway(
        {
            "INFERENCE_PROVIDER": "llamacpp",
            "INFERENCE_LLAMACPP_BASE_URL": ",".join(s.url for s in servers),
            "INFERENCE_REQUEST_DEADLINE": "120",
            "HEALTH_CHECK_INTERVAL": "60",
        }
    )
    try:
        chunks, raw, victim, error = stream_and_kill(gw, recording, servers)
        trace_resumes = _metrics(gw)
    finally:
        gw.stop()
    assert error is None, f"the client saw an error: {error}"
    # the bytes the SDK received: one [DONE], at the very end, no error event
    assert raw.endswith(b"data: [DONE]\n\n")
    assert raw.count(b"[DONE]") == 1
    assert b'"error"' not in raw
    # one answer: one id, one model, one role, one finish_reason, usage at the end
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {ALIAS}
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert len(finishes) == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    # the seam, against what each leg produced upstream
    assert len(recording.legs) == 2, [leg["port"] for leg in recording.legs]
    first, second = recording.legs
    assert first["port"] == victim.port
    assert second["port"] != victim.port
    leg1 = contents(events(first["raw"]))
    leg2_events = events(second["raw"])
    leg2 = contents(leg2_events)
    client_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(leg1) >= KILL_AFTER
    assert second["body"]["messages"][-1] == {"role": "assistant", "content": "".join(leg1)}
    assert second["body"]["continue_final_message"] is True
    assert second["body"]["add_generation_prompt"] is False
    assert client_text == "".join(leg1) + "".join(leg2), "text repeated or lost at the seam"
    assert leg2, "the second replica produced nothing"
    # usage: every token the client received (leg 1 one per chunk) and the resume leg's prompt
    leg2_usage = next(e["usage"] for e in leg2_events if e.get("usage"))
    assert chunks[-1].usage.completion_tokens == len(leg1) + leg2_usage["completion_tokens"]
    assert chunks[-1].usage.prompt_tokens == leg2_usage["prompt_tokens"]
    assert second["body"]["max_tokens"] == 400 - len(leg1)
    # operators see it: the resume counter
    assert trace_resumes == {("llamacpp", "resumed"): 1.0}
    print(
        f"\nresumed after {len(leg1)} tokens on :{second['port']}; "
        f"{len(leg2)} more tokens; seam: {''.join(leg1)[-20:]!r} | {''.join(leg2)[:20]!r}"
    )


def test_a_backend_that_cannot_continue_keeps_the_in_band_error(two_llama_servers):
    servers = two_llama_servers
    gw, recording = gateway(
        {
            "INFERENCE_PROVIDER": "openai",  # the OpenAI plugin: never continues a message
            "INFERENCE_OPENAI_BASE_URL": ",".join(s.url + "/v1" for s in servers),
            "INFERENCE_OPENAI_API_KEY": "unused",
            "INFERENCE_REQUEST_DEADLINE": "120",
            "HEALTH_CHECK_INTERVAL": "60",
        }
    )
    try:
        _chunks, raw, _victim, error = stream_and_kill(gw, recording, servers)
        resumes = _metrics(gw)
    finally:
        gw.stop()
    assert error is not None  # the SDK raised the in-band error event
    assert b"[DONE]" not in raw
    assert b'"error"' in raw
    assert len(recording.legs) == 1  # nobody was asked to continue
    assert resumes == {("openai", "skipped"): 1.0}


def test_a_completion_stream_survives_the_kill_too(two_llama_servers):
    """``/v1/completions``: the second replica continues from the prompt plus the text."""
    servers = two_llama_servers
    gw, recording = gateway(
        {
            "INFERENCE_PROVIDER": "llamacpp",
            "INFERENCE_LLAMACPP_BASE_URL": ",".join(s.url for s in servers),
            "INFERENCE_REQUEST_DEADLINE": "120",
            "HEALTH_CHECK_INTERVAL": "60",
        }
    )
    client = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=120)
    prompt = "Here is a long list of the numbers from one to one hundred: one, two, three,"
    texts: list[str] = []
    ids, finishes = set(), []
    killed = None
    try:
        for chunk in client.completions.create(
            model=ALIAS, prompt=prompt, max_tokens=150, temperature=0, stream=True
        ):
            ids.add(chunk.id)
            if chunk.choices:
                texts.append(chunk.choices[0].text)
                if chunk.choices[0].finish_reason:
                    finishes.append(chunk.choices[0].finish_reason)
            if killed is None and len([t for t in texts if t]) == KILL_AFTER:
                killed = next(s for s in servers if s.port == recording.legs[0]["port"])
                os.kill(killed.pid, signal.SIGKILL)
                killed.process.wait(5)
    finally:
        gw.stop()
    assert killed is not None
    first, second = recording.legs
    leg1, leg2 = contents(events(first["raw"])), contents(events(second["raw"]))
    assert second["body"]["prompt"] == prompt + "".join(leg1)
    assert "".join(texts) == "".join(leg1) + "".join(leg2), "text repeated or lost at the seam"
    assert leg2
    assert len(ids) == 1
    assert len(finishes) == 1


class CuttingRelays:
    """TCP relays to one server, each a replica URL of it; the first chat completion that goes
    through any of them is cut (connection aborted) after ``after`` response bytes."""

    def __init__(self, upstream: httpx.URL, n: int, after: int) -> None:
        self.upstream, self.after = upstream, after
        self.ports: list[int] = []
        self.cut = False
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(n, ready), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the relays did not start"

    def _run(self, n: int, ready: threading.Event) -> None:
        async def start() -> None:
            for _ in range(n):
                server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
                self.ports.append(server.sockets[0].getsockname()[1])

        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: Any, writer: Any) -> None:
        up_r, up_w = await asyncio.open_connection(self.upstream.host, self.upstream.port)
        victim = [False]

        async def client_to_upstream() -> None:
            while data := await reader.read(65536):
                if not self.cut and data.startswith(b"POST /v1/chat/completions"):
                    self.cut = victim[0] = True
                up_w.write(data)
                await up_w.drain()

        async def upstream_to_client() -> None:
            sent = 0
            while data := await up_r.read(65536):
                if victim[0] and sent + len(data) >= self.after:
                    writer.write(data[: self.after - sent])
                    await writer.drain()
                    writer.transport.abort()  # the replica is gone, mid-stream
                    up_w.transport.abort()  # and the server stops generating
                    return
                sent += len(data) if victim[0] else 0
                writer.write(data)
                await writer.drain()

        tasks = [
            asyncio.ensure_future(client_to_upstream()),
            asyncio.ensure_future(upstream_to_client()),
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_w):
            w.transport.abort()

    def stop(self) -> None:
        async def cancel_all() -> None:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.vllm
def test_a_vllm_replica_cut_mid_stream_is_invisible_to_the_client():
    """Two replica URLs of the one shared vLLM server (a second vLLM does not fit here), each
    through a TCP relay; the stream that goes first is cut mid-generation by its relay, and the
    other replica continues it with ``continue_final_message``."""
    vllm_url = peer_url(
        "INFERENCE_TEST_VLLM_CHAT_URL", "bash scripts/peers/vllm.sh start PORT chat"
    )
    relays = CuttingRelays(httpx.URL(vllm_url), 2, after=2500)
    gw, recording = gateway(
        {
            "INFERENCE_PROVIDER": "vllm",
            "INFERENCE_VLLM_BASE_URL": ",".join(f"http://127.0.0.1:{p}" for p in relays.ports),
            "INFERENCE_REQUEST_DEADLINE": "120",
            "HEALTH_CHECK_INTERVAL": "60",
        }
    )
    seen = ClientBytes()
    client = openai.OpenAI(
        base_url=gw.base_url, api_key="unused", max_retries=0, timeout=120,
        http_client=httpx.Client(transport=seen, timeout=120),
    )  # fmt: skip
    try:
        chunks = list(
            client.chat.completions.create(
                model="gemma3-270m",
                messages=PROMPT,
                max_tokens=120,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        resumes = _metrics(gw)
    finally:
        gw.stop()
        relays.stop()
    raw = bytes(seen.raw)
    assert relays.cut, "no stream went through a relay"
    assert raw.endswith(b"data: [DONE]\n\n")
    assert raw.count(b"[DONE]") == 1
    assert b'"error"' not in raw
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"gemma3-270m"}
    first, second = recording.legs
    assert first["port"] != second["port"]
    leg1_events, leg2_events = events(first["raw"]), events(second["raw"])
    leg1, leg2 = contents(leg1_events), contents(leg2_events)
    assert len(leg1) >= 3, "the cut came before a few tokens"
    assert second["body"]["messages"][-1] == {"role": "assistant", "content": "".join(leg1)}
    assert second["body"]["continue_final_message"] is True
    assert second["body"]["add_generation_prompt"] is False
    client_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert leg2, "the second replica produced nothing"
    assert client_text == "".join(leg1) + "".join(leg2), "text repeated or lost at the seam"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert len([f for f in finishes if f]) == 1
    leg2_usage = next(e["usage"] for e in leg2_events if e.get("usage"))
    assert chunks[-1].usage.completion_tokens == len(leg1) + leg2_usage["completion_tokens"]
    assert resumes == {("vllm", "resumed"): 1.0}
    seam = f"{''.join(leg1)[-20:]!r} | {''.join(leg2)[:20]!r}"
    print(f"\nvLLM: resumed after {len(leg1)} tokens; seam {seam}")


def _metrics(gw: RunningGateway) -> dict[tuple[str, str], float]:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("inference_gateway_stream_resumes_total{"):
            labels, value = line.rsplit(" ", 1)
            fields = dict(p.split("=", 1) for p in labels[labels.index("{") + 1 : -1].split(","))
            out[(fields["backend"].strip('"'), fields["outcome"].strip('"'))] = float(value)
    return out


@pytest.mark.vllm
def test_any_model_continues_a_killed_llama_stream_on_real_vllm(two_llama_servers):
    """One machine runs one vLLM server, so no vLLM replicas here: instead the llama.cpp
    primary is killed mid-stream and the real vLLM server (another name for the model) continues
    the same answer under ``INFERENCE_STREAM_RESUME=any-model``."""
    vllm_url = peer_url(
        "INFERENCE_TEST_VLLM_CHAT_URL", "bash scripts/peers/vllm.sh start PORT chat"
    )
    servers = two_llama_servers[:1]
    two_llama_servers[1].stop()
    gw, recording = gateway(
        {
            "INFERENCE_PROVIDER": "llamacpp",
            "INFERENCE_LLAMACPP_BASE_URL": servers[0].url,
            "ENABLE_FALLBACK": "true",
            "FALLBACK_CHAIN": "vllm",
            "INFERENCE_VLLM_BASE_URL": vllm_url,
            "INFERENCE_STREAM_RESUME": "any-model",
            "INFERENCE_REQUEST_DEADLINE": "120",
            "HEALTH_CHECK_INTERVAL": "60",
        }
    )
    try:
        chunks, raw, _victim, error = stream_and_kill(gw, recording, servers, max_tokens=80)
        resumes = _metrics(gw)
    finally:
        gw.stop()
    assert error is None, f"the client saw an error: {error}"
    assert raw.endswith(b"data: [DONE]\n\n")
    assert raw.count(b"[DONE]") == 1
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {ALIAS}  # the name the client saw, not vLLM's
    first, second = recording.legs
    assert second["port"] == httpx.URL(vllm_url).port
    leg1, leg2 = contents(events(first["raw"])), contents(events(second["raw"]))
    assert second["body"]["messages"][-1] == {"role": "assistant", "content": "".join(leg1)}
    assert second["body"]["continue_final_message"] is True
    client_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert leg2, "vLLM produced nothing"
    assert client_text == "".join(leg1) + "".join(leg2), "text repeated or lost at the seam"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert len([f for f in finishes if f]) == 1
    assert chunks[-1].usage.completion_tokens >= len(leg1) + 1
    assert resumes == {("llamacpp", "resumed"): 1.0}
