"""The small GET routes: ``/v1/models``, ``/v1/health/inference``, ``/health``, ``/ready``,
``/metrics`` (when metrics are on).  OpenAI-shaped errors; ``/health`` and ``/ready`` need no
key; ``/v1/health/inference`` and ``/metrics`` need one when protected by the settings.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ...errors import ModelNotFound
from ...models import ModelInfo, WireModel
from ...routing.sync import seed_health
from ..logs import LOGGER
from ..metrics import CONTENT_TYPE_LATEST
from ..pipeline import Gateway, Handler, Receive, Route, Scope, Send, alt_key, json_default
from ..security import public_health

__all__ = ["routes"]

log = logging.getLogger(LOGGER)


def _key_of(gw: Gateway, scope: Scope) -> Any:
    """The caller's key record (``None``: no usable key; the route's own check answers 401)."""
    auth = gw.headers_of(scope)[0]
    return gw.teams.access.record_of(auth, alt_key(scope, auth))


def _usable(record: Any, item: Any) -> bool:
    """True when a key limited to some models (``--models`` globs) may ask for ``item`` by one
    of the names it answers to: its id, an alias, or ``backend/id``."""
    if record is None or not record.models:
        return record is not None
    get = item.get if isinstance(item, dict) else lambda name: getattr(item, name, None)
    model_id = get("id")
    names = [model_id, *(get("aliases") or ())]
    backend = get("backend")
    if backend:
        names.append(f"{backend}/{model_id}")
    return any(record.allows(name) for name in names if name)


def _models(gw: Gateway) -> Handler:
    async def models(scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models``: every model of every usable backend that the key may use."""

        async def produce() -> tuple[int, bytes]:
            record = _key_of(gw, scope)
            items: list[ModelInfo] = await gw.router.list_models()
            data = [m.to_dict() if isinstance(m, WireModel) else dict(m) for m in items]
            if record is None or record.models:
                data = [item for item in data if _usable(record, item)]
            return 200, orjson.dumps({"object": "list", "data": data})

        await gw.simple(scope, send, "models", produce)

    return models


def _model_detail(gw: Gateway) -> Handler:
    async def model_detail(scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/models/{id}``: one model (an id, alias, ``backend/model``), its backends.

        For a key limited to some models, a model it may not use is a 404 like one that is not
        there, and neither suggests close names: such a key learns nothing of the others."""
        model_id = scope["path"][len("/v1/models/") :]

        async def produce() -> tuple[int, bytes]:
            record = _key_of(gw, scope)
            found = await gw.router.find_model(model_id) if model_id else []
            if (record is None or record.models) and not (
                found
                and record is not None
                and (record.allows(model_id) or any(_usable(record, m) for m in found))
            ):
                raise ModelNotFound(
                    f"The model {model_id[:120]!r} does not exist or this key may not use it",
                    model=model_id,
                )
            if not found:
                catalog = getattr(gw.router, "catalog", None)
                if catalog is not None:
                    raise catalog.not_found(model_id)
                raise ModelNotFound(f"The model {model_id[:120]!r} does not exist", model=model_id)
            first = found[0].to_dict()
            first["backends"] = [m.backend for m in found]
            return 200, orjson.dumps(first)

        await gw.simple(scope, send, "models", produce)

    return model_detail


def _health_detail(gw: Gateway) -> Handler:
    async def health_detail(scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            refresh = b"refresh=true" in scope.get("query_string", b"") or (
                b"refresh=1" in scope.get("query_string", b"")
            )
            backends = await gw.router.health(refresh=refresh)
            ready = bool(gw.router.ready())
            states = [b.get("state") for b in backends.values() if isinstance(b, dict)]
            if ready and states and all(s == "ready" for s in states):
                overall = "ok"
            elif ready:
                overall = "degraded"
            else:
                overall = "unavailable"
            if gw.metrics is not None:
                gw.metrics.update_from_health(backends)
            payload = {
                "status": overall,
                "ready": ready,
                **seed_health(backends),  # the seed application's get_health_status() keys
                "backends": public_health(backends),  # replicas by name, not URL
            }
            return 200, orjson.dumps(gw.public.deep(payload), default=json_default)

        await gw.simple(scope, send, "health", produce, protected=gw.protect_health)

    return health_detail


def _liveness(gw: Gateway) -> Handler:
    async def liveness(scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            return 200, b'{"status":"ok"}'

        await gw.simple(scope, send, "liveness", produce, protected=False)

    return liveness


def _readiness(gw: Gateway) -> Handler:
    async def readiness(scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            if gw.router.ready():
                return 200, b'{"status":"ready"}'
            return 503, orjson.dumps(
                {
                    "status": "unavailable",
                    "error": {
                        "message": "No backend of the chain is usable.",
                        "type": "service_unavailable",
                        "param": None,
                        "code": "not_ready",
                    },
                }
            )

        await gw.simple(scope, send, "readiness", produce, protected=False)

    return readiness


def _prometheus(gw: Gateway) -> Handler:
    metrics = gw.metrics
    assert metrics is not None

    async def prometheus(scope: Scope, receive: Receive, send: Send) -> None:
        async def produce() -> tuple[int, bytes]:
            try:
                metrics.update_from_health(await gw.router.health())
            except Exception:
                log.warning("router.health() failed during a metrics scrape", exc_info=True)
            return 200, metrics.render()

        await gw.simple(
            scope, send, "metrics", produce, protected=gw.protect_metrics,
            content_type=(b"content-type", CONTENT_TYPE_LATEST.encode()),
        )  # fmt: skip

    return prometheus


def routes(gateway: Gateway) -> list[Route]:
    """The GET routes (``/metrics`` only when metrics are on)."""
    out = [
        Route("/v1/models", ("GET",), _models(gateway), "List models (union over usable backends)"),
        Route("/v1/health/inference", ("GET",), _health_detail(gateway),
              "Every backend's health"),
        Route("/health", ("GET",), _liveness(gateway), "Liveness"),
        Route("/ready", ("GET",), _readiness(gateway),
              "Readiness: 200 when a backend is usable, else 503"),
    ]  # fmt: skip
    if gateway.metrics is not None:
        out.append(Route("/metrics", ("GET",), _prometheus(gateway), "Prometheus metrics"))
    out.append(
        Route("/v1/models/", ("GET",), _model_detail(gateway), "One model and its backends",
              prefix=True, openapi_path="/v1/models/{model_id:path}")
    )  # fmt: skip
    return out
