"""Prometheus metrics of the gateway (one registry per app, so tests can build many apps).

| metric | type | labels |
|---|---|---|
| ``inference_gateway_requests_total`` | counter | endpoint, backend, status |
| ``inference_gateway_request_duration_seconds`` | histogram | endpoint, backend |
| ``inference_gateway_overhead_seconds`` | histogram | endpoint |
| ``inference_gateway_time_to_first_token_seconds`` | histogram | backend |
| ``inference_gateway_tokens_total`` | counter | backend, direction (prompt, completion) |
| ``inference_gateway_fallbacks_total`` | counter | backend (the one left), reason (error kind) |
| ``inference_gateway_retries_total`` | counter | backend, reason |
| ``inference_gateway_stream_errors_total`` | counter | backend, reason (after the first chunk) |
| ``inference_gateway_stream_resumes_total`` | counter | backend (the one cut), outcome |
| ``inference_gateway_in_flight_requests`` | gauge | |
| ``inference_gateway_backend_up`` | gauge | backend (1 ready, 0.5 loading, 0 down) |
| ``inference_gateway_backend_state`` | gauge | backend, state (1 for the current state) |
| ``inference_gateway_breaker_open`` | gauge | backend (1 open, 0.5 half-open, 0 closed) |
| ``inference_gateway_key_tokens_total`` | counter | key (name), model (served), backend, dir |
| ``inference_gateway_key_requests_total`` | counter | key, status |
| ``inference_gateway_limit_rejections_total`` | counter | key, limit (rpm, tpm, parallel, budget) |

Labels never carry a client-chosen value (no requested model names, no paths outside the fixed
set), so cardinality is bounded by the configuration: keys are labelled by their *name* from the
key store (never the secret), models by the name the backend reported.  Recording a request
costs a few dictionary look-ups: label children are cached.

Several worker processes (``inference serve --workers N``): when ``PROMETHEUS_MULTIPROC_DIR``
is set (``serve`` sets it to a fresh temporary directory for N > 1 when it is not), every
process writes its values there and ``/metrics`` on any worker renders all of them together
(``prometheus_client.multiprocess``): counters and histograms summed, the in-flight gauge summed
over live workers, backend gauges the most recent value written.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
_OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STATES = ("ready", "loading", "down", "unknown")
_UP = {"ready": 1.0, "loading": 0.5, "down": 0.0}
_BREAKER = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


class GatewayMetrics:
    """The gateway's collectors and cheap recording helpers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        #: the directory every worker writes to (None: this process's values only)
        self.multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        latest: Any = {"multiprocess_mode": "mostrecent"} if self.multiproc_dir else {}
        self.requests = Counter(
            "inference_gateway_requests",
            "Requests answered, by endpoint, serving backend and HTTP status.",
            ("endpoint", "backend", "status"),
            registry=r,
        )
        self.duration = Histogram(
            "inference_gateway_request_duration_seconds",
            "Whole request latency as the gateway saw it (stream: until the last byte).",
            ("endpoint", "backend"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "inference_gateway_overhead_seconds",
            "Time the gateway spent itself before answering (total minus upstream wait).",
            ("endpoint",),
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "inference_gateway_time_to_first_token_seconds",
            "Streams: time from the request to the first chunk sent to the client.",
            ("backend",),
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "inference_gateway_tokens",
            "Tokens reported by backends (usage), by direction.",
            ("backend", "direction"),
            registry=r,
        )
        self.fallbacks = Counter(
            "inference_gateway_fallbacks",
            "Requests moved on to the next backend, by the backend left and the reason.",
            ("backend", "reason"),
            registry=r,
        )
        self.retries = Counter(
            "inference_gateway_retries",
            "Requests retried on the same backend, by reason.",
            ("backend", "reason"),
            registry=r,
        )
        self.stream_errors = Counter(
            "inference_gateway_stream_errors",
            "Streams ended by an in-band error event after the first chunk, by reason.",
            ("backend", "reason"),
            registry=r,
        )
        self.stream_resumes = Counter(
            "inference_gateway_stream_resumes",
            "Streams cut after the first chunk, by the backend cut and the resume's outcome "
            "(resumed, failed, skipped).",
            ("backend", "outcome"),
            registry=r,
        )
        self.in_flight = Gauge(
            "inference_gateway_in_flight_requests",
            "Requests being served.",
            registry=r,
            **({"multiprocess_mode": "livesum"} if self.multiproc_dir else {}),
        )
        self.backend_up = Gauge(
            "inference_gateway_backend_up",
            "Backend health: 1 ready, 0.5 loading, 0 down.",
            ("backend",),
            registry=r,
            **latest,
        )
        self.backend_state = Gauge(
            "inference_gateway_backend_state",
            "1 for the backend's current health state.",
            ("backend", "state"),
            registry=r,
            **latest,
        )
        self.breaker = Gauge(
            "inference_gateway_breaker_open",
            "Circuit breaker: 0 closed, 0.5 half-open, 1 open.",
            ("backend",),
            registry=r,
            **latest,
        )
        self.key_token_counter = Counter(
            "inference_gateway_key_tokens",
            "Tokens used per API key (its name), served model, backend and direction.",
            ("key", "model", "backend", "direction"),
            registry=r,
        )
        self.key_request_counter = Counter(
            "inference_gateway_key_requests",
            "Requests answered per API key (its name) and HTTP status.",
            ("key", "status"),
            registry=r,
        )
        self.limit_rejections = Counter(
            "inference_gateway_limit_rejections",
            "Requests refused with 429 because a key reached a limit.",
            ("key", "limit"),
            registry=r,
        )
        self._ktok: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._kreq: dict[tuple[str, int], Any] = {}
        labels = ("backend", "replica")
        self.admission = {
            key: Gauge(f"inference_gateway_admission_{key}", text, labels, registry=r)
            for key, text in (
                ("limit", "Admission cap: requests in flight allowed per replica."),
                ("in_flight", "Requests in flight on the replica (admitted)."),
                ("queued", "Requests waiting in the replica's admission queue."),
                ("queue_limit", "Requests that may wait in the replica's queue."),
                ("rejected_full", "Requests refused at once, queue full (cumulative)."),
                ("rejected_timeout", "Requests that waited QUEUE_TIMEOUT in vain (cumulative)."),
                ("wait_seconds_sum", "Seconds spent waiting in the queue (cumulative)."),
                ("wait_seconds_max", "Longest wait in the queue, in seconds."),
            )
        }  # fmt: skip
        self._req: dict[tuple[str, str, int], Any] = {}
        self._dur: dict[tuple[str, str], Any] = {}
        self._ovh: dict[str, Any] = {}
        self._ttft: dict[str, Any] = {}
        self._tok: dict[tuple[str, str], Any] = {}
        self._inc_flight = self.in_flight.inc
        self._dec_flight = self.in_flight.dec

    # ----------------------------------------------------------------- per request

    def begin(self) -> None:
        self._inc_flight()

    def record(
        self,
        endpoint: str,
        backend: str,
        status: int,
        duration: float,
        overhead: float | None,
        ttft: float | None = None,
        trace: Any = None,
        attempts_before: int | None = None,
    ) -> None:
        """Count one finished request (call exactly once per :meth:`begin`).

        ``attempts_before``: for a stream, how many of ``trace.attempts`` were made before it
        was served (a failure after the first chunk is a stream error, not a fallback).
        """
        self._dec_flight()
        key = (endpoint, backend, status)
        child = self._req.get(key)
        if child is None:
            child = self._req[key] = self.requests.labels(endpoint, backend, str(status))
        child.inc()
        dkey = (endpoint, backend)
        hist = self._dur.get(dkey)
        if hist is None:
            hist = self._dur[dkey] = self.duration.labels(endpoint, backend)
        hist.observe(duration)
        if overhead is not None:
            ohist = self._ovh.get(endpoint)
            if ohist is None:
                ohist = self._ovh[endpoint] = self.overhead.labels(endpoint)
            ohist.observe(overhead)
        if ttft is not None:
            thist = self._ttft.get(backend)
            if thist is None:
                thist = self._ttft[backend] = self.ttft.labels(backend)
            thist.observe(ttft)
        if trace is not None:
            usage = getattr(trace, "usage", None)
            if usage is not None:
                self._count_tokens(backend, usage)
            attempts = getattr(trace, "attempts", None)
            if attempts and attempts_before is not None:
                attempts = attempts[:attempts_before]
            if attempts:
                self._count_attempts(attempts, getattr(trace, "backend", None))
            resumes = getattr(trace, "resumes", None)
            if resumes:
                for r in resumes:
                    self.stream_resumes.labels(r.backend, r.outcome).inc()

    def _count_tokens(self, backend: str, usage: Any) -> None:
        for direction, attr in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
            n = getattr(usage, attr, 0) or 0
            if n > 0:
                key = (backend, direction)
                child = self._tok.get(key)
                if child is None:
                    child = self._tok[key] = self.tokens.labels(backend, direction)
                child.inc(n)

    def _count_attempts(self, attempts: list[Any], served_by: str | None) -> None:
        failed = [a for a in attempts if getattr(a, "kind", "ok") not in ("ok", "success")]
        for i, attempt in enumerate(failed):
            nxt = failed[i + 1].backend if i + 1 < len(failed) else served_by
            counter = self.retries if nxt == attempt.backend else self.fallbacks
            counter.labels(attempt.backend, attempt.kind).inc()

    def key_tokens(self, key: str, model: str, backend: str, prompt: int, completion: int) -> None:
        """Count a request's tokens for the key named ``key``."""
        ident = (key, model, backend)
        pair = self._ktok.get(ident)
        if pair is None:
            c = self.key_token_counter
            pair = self._ktok[ident] = (
                c.labels(key, model, backend, "prompt"),
                c.labels(key, model, backend, "completion"),
            )
        if prompt:
            pair[0].inc(prompt)
        if completion:
            pair[1].inc(completion)

    def key_request(self, key: str, status: int) -> None:
        child = self._kreq.get((key, status))
        if child is None:
            child = self._kreq[(key, status)] = self.key_request_counter.labels(key, str(status))
        child.inc()

    def limit_rejected(self, key: str, limit: str) -> None:
        self.limit_rejections.labels(key, limit).inc()

    def stream_error(self, backend: str, reason: str) -> None:
        self.stream_errors.labels(backend, reason).inc()

    # ----------------------------------------------------------------- backend state

    def set_backend_state(
        self, backend: str, state: str | None, breaker: str | None = None
    ) -> None:
        """Record a backend's health state (and breaker state) - the router's state listener."""
        if state is not None:
            state = state if state in _STATES else "unknown"
            self.backend_up.labels(backend).set(_UP.get(state, 0.0))
            for s in _STATES:
                self.backend_state.labels(backend, s).set(1.0 if s == state else 0.0)
        if breaker is not None and breaker in _BREAKER:
            self.breaker.labels(backend).set(_BREAKER[breaker])

    def update_from_health(self, health: dict[str, dict[str, Any]]) -> None:
        """Refresh the backend gauges from ``router.health()`` (at scrape time)."""
        for name, info in health.items():
            if isinstance(info, dict):
                self.set_backend_state(name, info.get("state"), info.get("breaker"))
                self._admission(name, info.get("replicas"))

    def _admission(self, backend: str, replicas: Any) -> None:
        """Admission gauges per replica (labelled by index: /metrics shows no addresses)."""
        if not isinstance(replicas, list):
            return
        for i, replica in enumerate(replicas):
            snap = replica.get("admission") if isinstance(replica, dict) else None
            if not isinstance(snap, dict):
                continue
            for key, gauge in self.admission.items():
                value = snap.get(key)
                if isinstance(value, int | float):
                    gauge.labels(backend, str(i)).set(value)

    def render(self) -> bytes:
        """The exposition text: this registry, or every worker's values in multiprocess mode."""
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)
