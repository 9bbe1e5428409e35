"""The HTTP surface: ``create_app(router, settings) -> FastAPI``.

The app is assembled from protocol modules (``gateway/api/``: chat completions, completions
and embeddings; the status routes; ...), each a list of :class:`~.pipeline.Route` over the
one shared pipeline (:mod:`.pipeline`: auth, body limits, the router call, errors, headers,
metrics, access log).  The routes are served by plain ASGI handlers that :class:`GatewayApp`
dispatches to before FastAPI's routing runs: no ``Request`` object, no dependency solving, no
body validation machinery, no ``BaseHTTPMiddleware``.  The same routes are also declared on
the FastAPI app (with their request schemas in ``openapi_extra``) so that ``/openapi.json`` is
complete and the routes work when the app is reached through FastAPI's router.

Every answer carries ``x-request-id`` (the client's, when safe, else a fresh one),
``x-inference-backend`` (who served, ``none`` when nobody did) and
``x-inference-overhead-ms`` (the gateway's own time until the answer started: total minus
the time spent in the router waiting on upstreams).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .api import MODULES
from .errors import GatewayError, error_for
from .logs import LOGGER
from .pipeline import NONE, Gateway, Handler, Receive, Route, Scope, Send
from .security import clean_request_id, new_request_id
from .settings import GatewaySettings

__all__ = ["Gateway", "GatewayApp", "create_app"]

log = logging.getLogger(LOGGER)


class _RawASGI(Response):
    """A Response that runs one of the gateway's ASGI handlers (FastAPI's route path)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        await self.handler(scope, receive, send)


class GatewayApp(FastAPI):
    """FastAPI, with the gateway's ASGI handlers dispatched before FastAPI's routing."""

    gateway: Gateway
    _entry: Callable[[Scope, Receive, Send], Awaitable[None]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and (
            scope["method"] == "OPTIONS" or self.gateway.find(scope["path"]) is None
        ):
            # not a gateway route (docs, schema, 404s, CORS preflights): the headers every
            # response carries are added when missing (the gateway routes set them themselves)
            send = _with_gateway_headers(send, scope)
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.gateway.find(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            # FastAPI's ServerErrorMiddleware re-raises after answering 500 (our handler
            # logged it with the request id): do not let uvicorn log it a second time
            if scope["type"] != "http":
                raise


def _with_gateway_headers(send: Send, scope: Scope) -> Send:
    rid = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            rid = clean_request_id(value)
    rid_b = (rid or new_request_id()).encode()

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            present = {name.lower() for name, _ in headers}
            for name, value in (
                (b"x-request-id", rid_b),
                (b"x-inference-backend", NONE),
                (b"x-inference-overhead-ms", b"0.000"),
            ):
                if name not in present:
                    headers.append((name, value))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _schema_ref(model: type) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def create_app(
    router: Any,
    settings: GatewaySettings | None = None,
    *,
    manage_router: bool = True,
    state_settings: Any = None,
) -> FastAPI:
    """The gateway app for ``router``.

    ``manage_router``: the app's lifespan calls ``await router.start()`` at start-up and
    ``await router.aclose()`` at shutdown (stopping managed children).  ``settings`` defaults
    to ``GatewaySettings.from_env()``; ``state_settings`` (keys, limits, shared state,
    ``docs/teams.md``) to ``StateSettings.from_env()``.
    """
    settings = settings or GatewaySettings.from_env()
    gateway = Gateway(router, settings, state_settings)
    routes: list[Route] = []
    for name in MODULES:
        module = importlib.import_module(f".api.{name}", __package__)
        routes.extend(module.routes(gateway))
    gateway.add_routes(routes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_router and hasattr(router, "start"):
            await router.start()
        _attach_state_listener(router, gateway)
        await gateway.teams.start()
        try:
            yield
        finally:
            await gateway.teams.aclose()
            if manage_router and hasattr(router, "aclose"):
                import inspect

                params = inspect.signature(router.aclose).parameters
                if "drain_timeout" in params:
                    await router.aclose(drain_timeout=settings.drain_timeout)
                else:
                    await router.aclose()
            if gateway.telemetry is not None:
                gateway.telemetry.shutdown()  # export what the drained requests left

    from .. import __version__

    docs = settings.docs  # INFERENCE_GATEWAY_DOCS: /docs, /redoc, /openapi.json off by default
    app = GatewayApp(
        title="inference-core gateway",
        version=__version__,
        description="OpenAI-compatible gateway over a fallback chain of inference backends.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.gateway = gateway
    app.state.gateway = gateway
    app.state.router = router
    app.state.settings = settings

    entry: Callable[[Scope, Receive, Send], Awaitable[None]] = app._dispatch
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        entry = CORSMiddleware(
            app=app._dispatch,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=[
                "x-request-id",
                "x-inference-backend",
                "x-inference-model",
                "x-inference-overhead-ms",
            ],
            max_age=600,
        )
    app._entry = entry

    _declare_routes(app, gateway, routes)
    _install_handlers(app, gateway)
    return app


def _declare_routes(app: FastAPI, gateway: Gateway, routes: list[Route]) -> None:
    """The FastAPI side of each route: OpenAPI documentation, and a working slow path."""

    def route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return _RawASGI(handler)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    def body(model: type) -> dict[str, Any]:
        return {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _schema_ref(model)}},
            }
        }

    def ok(model: type | None, stream: bool = False) -> dict[int | str, Any]:
        content: dict[str, Any] = {}
        if model is not None:
            content["application/json"] = {"schema": _schema_ref(model)}
        if stream:
            content["text/event-stream"] = {"schema": {"type": "string"}}
        err_schema = {"schema": _schema_ref_error()}
        errors = {
            str(code): {"description": text, "content": {"application/json": err_schema}}
            for code, text in (
                (400, "Invalid request (param names the field)"),
                (401, "Missing or invalid gateway API key"),
                (404, "Unknown model"),
                (413, "Request body too large"),
                (429, "Rate limited (Retry-After)"),
                (503, "Every backend failed (attempts listed; x-should-retry: false)"),
            )
        }  # fmt: skip
        return {200: {"description": "OK", "content": content}, **errors}

    models: list[type] = []
    for r in routes:
        path = r.openapi_path or r.path
        if r.request_model is not None:
            app.add_api_route(
                path,
                route(r.handler),
                methods=list(r.methods),
                summary=r.summary,
                openapi_extra=body(r.request_model),
                responses=ok(r.response_model, r.stream),
                response_class=Response,
            )
            models.extend(m for m in (r.request_model, r.response_model) if m is not None)
        else:
            for method in r.methods:  # one operation per method (unique operation ids)
                app.add_api_route(
                    path, route(r.handler), methods=[method], summary=r.summary,
                    response_class=Response,
                )  # fmt: skip
            if r.response_model is not None:
                models.append(r.response_model)

    schemas: dict[str, Any] = {}
    for model in dict.fromkeys(models):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["ErrorResponse"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = original()
            spec.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _schema_ref_error() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ErrorResponse"}


def _install_handlers(app: FastAPI, gateway: Gateway) -> None:
    """OpenAI-shaped answers for whatever reaches FastAPI's own routing (404, 405, errors)."""
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "unknown_route", 405: "method_not_allowed"}.get(exc.status_code)
        message = (
            f"Unknown route: {request.method} {request.url.path}"
            if exc.status_code == 404
            else str(exc.detail)
        )
        _status, body, extra = error_for(GatewayError(exc.status_code, message, code=code))
        rid = clean_request_id(request.headers.get("x-request-id", "").encode()) or new_request_id()
        headers = {k.decode(): v.decode() for k, v in extra}
        headers.update(dict(exc.headers or {}))
        headers.update({"x-request-id": rid, "x-inference-backend": "none",
                        "x-inference-overhead-ms": "0.000"})  # fmt: skip
        return Response(body, status_code=exc.status_code, headers=headers,
                        media_type="application/json")  # fmt: skip

    async def unexpected(request: Request, exc: Exception) -> Response:
        rid = clean_request_id(request.headers.get("x-request-id", "").encode()) or new_request_id()
        gateway.log_error(exc, rid, request.url.path)
        status, body, extra = error_for(exc, gateway.public)
        headers = {k.decode(): v.decode() for k, v in extra}
        headers.update({"x-request-id": rid, "x-inference-backend": "none",
                        "x-inference-overhead-ms": "0.000"})  # fmt: skip
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)


def _attach_state_listener(router: Any, gateway: Gateway) -> None:
    """Feed backend state changes into the metrics, when the router offers a listener hook."""
    metrics = gateway.metrics
    if metrics is None:
        return
    add = getattr(router, "add_state_listener", None)
    if not callable(add):
        return

    def listener(
        backend: str, state: str | None = None, breaker: str | None = None, **_: Any
    ) -> None:
        metrics.set_backend_state(backend, state, breaker)

    try:
        add(listener)
    except Exception:
        log.warning("could not attach the backend state listener", exc_info=True)
