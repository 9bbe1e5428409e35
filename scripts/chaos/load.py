"""Load driver for the chaos suite: paced concurrent chat traffic, every outcome classified.

N concurrent clients send a mix of streaming and non-streaming ``POST /v1/chat/completions``
through the gateway (loopback), at a fixed pace (``rate`` requests/s, so that a fault injected at
time T meets live traffic), bounded in count (``total``) and in time (``max_duration``; every
request is further bounded by ``deadline + 1`` s). Each outcome is exactly one of:

``succeeded``
    non-stream: 200, JSON ``chat.completion`` with a ``choices[0].message``; stream: 200
    ``text/event-stream`` whose events are all ``chat.completion.chunk`` objects (at least one)
    and which ends with ``data: [DONE]``.
``failed_well_formed``
    a non-200 JSON body ``{"error": {"message": str, "type": str, ...}}``, or a 200 stream that
    carries an in-band ``data: {"error": {...}}`` event and no ``[DONE]``.
``hung``
    no complete answer within ``deadline + 1`` s.
``malformed``
    anything an OpenAI client cannot parse: invalid JSON, a 200 with the wrong shape, a non
    OpenAI error shape, an HTML or plain-text error page (a 500 stack trace), an SSE event that is
    not a chunk, ``[DONE]`` after an error, a broken transfer (incomplete chunked body,
    connection reset by the gateway).
``silent_truncated``
    a 200 SSE stream that ended cleanly without ``[DONE]`` and without an error event.

    python scripts/chaos/load.py --url http://127.0.0.1:29000 --total 2000 --concurrency 20 \\
        --rate 60 --deadline 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KINDS",
    "LoadResult",
    "Outcome",
    "classify_json",
    "classify_sse",
    "percentile",
    "run_load",
]

KINDS = ("succeeded", "failed_well_formed", "hung", "malformed", "silent_truncated")


@dataclass
class Outcome:
    kind: str
    stream: bool
    t_start: float  # seconds since the run started
    latency: float
    status: int | None = None
    detail: str = ""
    backend: str | None = None  # the gateway's x-inference-backend header, when it sent one
    midstream: bool = False  # an in-band error after >= 1 chunk had reached the client
    request_id: str = ""  # sent as x-request-id (the gateway logs it)


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    duration: float = 0.0

    def counts(self, outcomes: list[Outcome] | None = None) -> dict[str, int]:
        c = Counter(o.kind for o in (self.outcomes if outcomes is None else outcomes))
        return {k: c.get(k, 0) for k in KINDS}

    def window(self, start: float, end: float) -> list[Outcome]:
        """Outcomes of the requests *sent* within [start, end) (run-relative seconds)."""
        return [o for o in self.outcomes if start <= o.t_start < end]

    def summary(self, outcomes: list[Outcome] | None = None) -> dict[str, Any]:
        outs = self.outcomes if outcomes is None else outcomes
        c = self.counts(outs)
        lat = sorted(o.latency for o in outs if o.kind != "hung")
        n = len(outs)
        mid = sum(1 for o in outs if o.midstream)
        by_backend = Counter(o.backend or "-" for o in outs if o.kind == "succeeded")
        return {
            "sent": n,
            **c,
            "midstream_errors": mid,
            "success_rate": (c["succeeded"] / n) if n else 1.0,
            "success_rate_excl_midstream": (c["succeeded"] / (n - mid)) if n - mid else 1.0,
            "served_by": dict(sorted(by_backend.items())),
            "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
            "streams": sum(1 for o in outs if o.stream),
        }

    def examples(
        self, kinds: tuple[str, ...] = ("hung", "malformed", "silent_truncated"), limit: int = 5
    ) -> dict[str, list[str]]:
        """A few details per bad kind (status and what the client saw), for the report."""
        out: dict[str, list[str]] = {}
        for o in self.outcomes:
            if o.kind in kinds and len(out.setdefault(o.kind, [])) < limit:
                out[o.kind].append(
                    f"t={o.t_start:.2f}s {'stream' if o.stream else 'json'} {o.request_id} "
                    f"status={o.status} {o.detail}"
                )
        return out


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


# ---------------------------------------------------------------------------- classification
def _is_openai_error(obj: Any) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("error"), dict):
        return False
    err = obj["error"]
    return isinstance(err.get("message"), str) and isinstance(err.get("type"), str)


def classify_json(status: int, content_type: str, body: bytes) -> tuple[str, str]:
    """Classify a complete non-streaming answer (or a non-200 answer to a stream request)."""
    snippet = body[:120].decode("utf-8", "replace")
    try:
        obj = json.loads(body)
    except ValueError:
        return "malformed", f"not JSON ({content_type or 'no content-type'}): {snippet!r}"
    if status == 200:
        if "json" not in content_type:
            return "malformed", f"200 JSON body with content-type {content_type!r}"
        ok = (
            isinstance(obj, dict)
            and obj.get("object") == "chat.completion"
            and isinstance(obj.get("choices"), list)
            and obj["choices"]
            and isinstance(obj["choices"][0], dict)
            and isinstance(obj["choices"][0].get("message"), dict)
            and isinstance(obj["choices"][0]["message"].get("content", ""), str | None)
        )
        if ok:
            return "succeeded", ""
        return "malformed", f"200 with a wrong shape: {snippet!r}"
    if status >= 400 and "json" in content_type and _is_openai_error(obj):
        return "failed_well_formed", f"{obj['error'].get('type')}: {obj['error']['message'][:80]}"
    return "malformed", f"status {status} non-OpenAI error body: {snippet!r}"


class SSEState:
    """Incremental SSE parser + classifier for one chat stream."""

    def __init__(self) -> None:
        self.buf = b""
        self.chunks = 0
        self.done = False
        self.error: str | None = None
        self.bad: str | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buf:
            raw, self.buf = self.buf.split(b"\n\n", 1)
            self._event(raw)

    def _event(self, raw: bytes) -> None:
        lines = [ln for ln in raw.split(b"\n") if ln and not ln.startswith(b":")]
        data_lines = [ln[5:].lstrip(b" ") for ln in lines if ln.startswith(b"data:")]
        if not data_lines:
            return  # comment / keep-alive / event-only block
        payload = b"\n".join(data_lines)
        if self.bad:
            return
        if self.done:
            self.bad = f"event after [DONE]: {payload[:80]!r}"
            return
        if payload.strip() == b"[DONE]":
            if self.error is not None:
                self.bad = "[DONE] after an error event"
            self.done = True
            return
        try:
            obj = json.loads(payload)
        except ValueError:
            self.bad = f"SSE data is not JSON: {payload[:80]!r}"
            return
        if isinstance(obj, dict) and "error" in obj:
            if _is_openai_error(obj):
                self.error = f"{obj['error'].get('type')}: {obj['error']['message'][:80]}"
            else:
                self.bad = f"non-OpenAI in-band error: {payload[:80]!r}"
            return
        if self.error is not None:
            self.bad = "chunk after an error event"
            return
        if (
            isinstance(obj, dict)
            and obj.get("object") == "chat.completion.chunk"
            and isinstance(obj.get("choices"), list)
        ):
            self.chunks += 1
            return
        self.bad = f"SSE event is not a chat.completion.chunk: {payload[:80]!r}"

    @property
    def midstream(self) -> bool:
        return self.error is not None and self.bad is None and self.chunks > 0

    def finish(self) -> tuple[str, str]:
        if self.buf.strip():
            self._event(self.buf)
            self.buf = b""
        if self.bad:
            return "malformed", self.bad
        if self.error is not None:
            return "failed_well_formed", f"in-band error after {self.chunks} chunks: {self.error}"
        if self.done:
            if self.chunks == 0:
                return "malformed", "[DONE] without any chunk"
            return "succeeded", ""
        return "silent_truncated", f"stream ended after {self.chunks} chunks, no [DONE], no error"


def classify_sse(body: bytes) -> tuple[str, str]:
    """Classify a complete 200 ``text/event-stream`` body."""
    st = SSEState()
    st.feed(body)
    return st.finish()


# ---------------------------------------------------------------------------- driver
def _payload(i: int, stream: bool, model: str, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": f"Say hello #{i}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream and i % 4 == 1:
        body["stream_options"] = {"include_usage": True}
    return body


async def _one(
    client,
    url: str,
    i: int,
    stream: bool,
    model: str,
    max_tokens: int,
    t0: float,
    deadline: float,
    rid: str = "",
) -> Outcome:
    import httpx

    start = time.monotonic()
    status: int | None = None
    backend: str | None = None
    state = SSEState()
    got_200_stream = False

    async def go() -> tuple[str, str]:
        nonlocal status, got_200_stream, backend
        payload = _payload(i, stream, model, max_tokens)
        hdrs = {"x-request-id": rid} if rid else None
        if not stream:
            r = await client.post(url, json=payload, headers=hdrs)
            status = r.status_code
            backend = r.headers.get("x-inference-backend")
            return classify_json(r.status_code, r.headers.get("content-type", ""), r.content)
        async with client.stream("POST", url, json=payload, headers=hdrs) as r:
            status = r.status_code
            backend = r.headers.get("x-inference-backend")
            ctype = r.headers.get("content-type", "")
            if r.status_code != 200:
                body = await r.aread()
                return classify_json(r.status_code, ctype, body)
            if "text/event-stream" not in ctype:
                body = await r.aread()
                return "malformed", f"200 stream answer with content-type {ctype!r}: {body[:80]!r}"
            got_200_stream = True
            async for data in r.aiter_raw():
                state.feed(data)
        return state.finish()

    try:
        kind, detail = await asyncio.wait_for(go(), deadline + 1.0)
    except TimeoutError:
        kind, detail = "hung", f"no complete answer within {deadline + 1:.1f}s"
        if got_200_stream:
            detail += f" (stream open, {state.chunks} chunks so far)"
    except httpx.HTTPError as exc:
        if got_200_stream:
            # the SDK raises at an in-band error event and never reads further
            st_kind, st_detail = state.finish()
            if st_kind == "failed_well_formed":
                kind, detail = st_kind, st_detail + f" (then {type(exc).__name__})"
            else:
                kind = "malformed"
                detail = (
                    f"transport error mid-stream after {state.chunks} chunks: "
                    f"{type(exc).__name__}: {exc}"
                )
        else:
            kind, detail = "malformed", f"transport error: {type(exc).__name__}: {exc}"
    mid = kind == "failed_well_formed" and state.midstream
    return Outcome(
        kind, stream, start - t0, time.monotonic() - start, status, detail, backend, mid, rid
    )


async def run_load(
    base_url: str,
    *,
    total: int = 300,
    concurrency: int = 20,
    rate: float | None = None,
    stream_ratio: float = 0.5,
    deadline: float = 10.0,
    max_tokens: int = 8,
    model: str = "default",
    max_duration: float = 120.0,
    t0: float | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    api_key: str | None = None,
    stop: asyncio.Event | None = None,
    request_id_prefix: str = "chaos",
) -> LoadResult:
    """Send ``total`` requests (paced at ``rate``/s if given) with ``concurrency`` clients.

    Stops launching after ``max_duration`` seconds or once ``stop`` is set; in-flight
    requests end within ``deadline + 1`` s. ``t0`` (a ``time.monotonic()`` value) is the
    run's time origin.
    """
    import httpx

    if not base_url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise ValueError("the chaos load driver only targets loopback")
    url = base_url.rstrip("/") + "/v1/chat/completions"
    t0 = time.monotonic() if t0 is None else t0
    started = time.monotonic()
    result = LoadResult()
    counter = iter(range(total))
    stream_every = 0 if stream_ratio <= 0 else max(1, round(1 / stream_ratio))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(deadline + 1.0, connect=5.0)

    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=headers) as client:

        async def worker() -> None:
            for i in counter:
                if rate:
                    wait = started + i / rate - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if time.monotonic() - started > max_duration or (stop and stop.is_set()):
                    return
                stream = stream_every > 0 and i % stream_every == 0
                o = await _one(client, url, i, stream, model, max_tokens, t0, deadline,
                               f"{request_id_prefix}-{i}")  # fmt: skip
                result.outcomes.append(o)
                if on_outcome is not None:
                    on_outcome(o)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.duration = time.monotonic() - started
    result.outcomes.sort(key=lambda o: o.t_start)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="gateway base URL (loopback)")
    ap.add_argument("--total", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--rate", type=float, default=None, help="requests per second")
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--max-duration", type=float, default=120.0)
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    res = asyncio.run(
        run_load(
            args.url,
            total=args.total,
            concurrency=args.concurrency,
            rate=args.rate,
            deadline=args.deadline,
            max_tokens=args.max_tokens,
            model=args.model,
            max_duration=args.max_duration,
        )
    )
    print(json.dumps({"summary": res.summary(), "examples": res.examples()}, indent=2))


if __name__ == "__main__":
    main()
