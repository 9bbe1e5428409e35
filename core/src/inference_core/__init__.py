"""inference-core: switch LLM inference backends by environment variables alone.

The public API, imported lazily so that ``import inference_core`` costs almost nothing:

* :class:`Router` (``Router.from_env()``), and :class:`SyncRouter` for scripts;
* the wire types of :mod:`inference_core.models`;
* the error taxonomy of :mod:`inference_core.errors`;
* :data:`hookimpl`, the marker backend plugins put on their ``async def`` hooks.

Plugins may import this package and :mod:`inference_core.http`, nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Router": "router",
    "SyncRouter": "router",
    "RequestTrace": "router",
    "Settings": "settings",
    # models
    "BackendConfig": "models",
    "ChatChunk": "models",
    "ChatMessage": "models",
    "ChatRequest": "models",
    "ChatResponse": "models",
    "ChatChoice": "models",
    "ChunkChoice": "models",
    "ChunkDelta": "models",
    "CompletionChoice": "models",
    "CompletionRequest": "models",
    "CompletionResponse": "models",
    "Embedding": "models",
    "EmbeddingRequest": "models",
    "EmbeddingResponse": "models",
    "Health": "models",
    "ModelInfo": "models",
    "Usage": "models",
    # errors
    "AllBackendsFailed": "errors",
    "Attempt": "errors",
    "AuthenticationFailed": "errors",
    "BackendError": "errors",
    "BackendTimeout": "errors",
    "BackendUnavailable": "errors",
    "BadRequest": "errors",
    "CapabilityNotSupported": "errors",
    "ConfigError": "errors",
    "ContextLengthExceeded": "errors",
    "InferenceError": "errors",
    "ModelNotFound": "errors",
    "PluginLoadError": "errors",
    "RateLimited": "errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference_core' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .errors import (
        AllBackendsFailed,
        Attempt,
        AuthenticationFailed,
        BackendError,
        BackendTimeout,
        BackendUnavailable,
        BadRequest,
        CapabilityNotSupported,
        ConfigError,
        ContextLengthExceeded,
        InferenceError,
        ModelNotFound,
        PluginLoadError,
        RateLimited,
    )
    from .hookspecs import hookimpl, hookspec
    from .models import (
        BackendConfig,
        ChatChoice,
        ChatChunk,
        ChatMessage,
        ChatRequest,
        ChatResponse,
        ChunkChoice,
        ChunkDelta,
        CompletionChoice,
        CompletionRequest,
        CompletionResponse,
        Embedding,
        EmbeddingRequest,
        EmbeddingResponse,
        Health,
        ModelInfo,
        Usage,
    )
    from .router import RequestTrace, Router, SyncRouter
    from .settings import Settings
