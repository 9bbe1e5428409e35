"""The OpenAI-compatible gateway: ``create_app(router, settings)`` and ``serve(host, port)``.

Imported lazily: ``import inference_core.gateway`` loads neither FastAPI nor uvicorn until
``create_app`` or ``serve`` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["GatewaySettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    if name == "GatewaySettings":
        from .settings import GatewaySettings

        return GatewaySettings
    raise AttributeError(f"module 'inference_core.gateway' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from .app import create_app
    from .server import serve
    from .settings import GatewaySettings
