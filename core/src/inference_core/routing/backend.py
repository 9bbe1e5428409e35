"""The router's view of one chain entry: its hooks, config, replicas and health status."""

from __future__ import annotations

from typing import Any

from ..models import BackendConfig
from ..resilience.balancer import ReplicaSet, strip_credentials
from ..resilience.health_monitor import BackendStatus

__all__ = ["OPS", "BackendEntry", "scrub"]

#: The request hooks the router dispatches (plus ``list_models`` and ``health``).
OPS = ("chat", "complete", "embed", "list_models", "health")


class BackendEntry:
    """One configured backend: ``callers[op]`` are its subset hook callers (None: no hook)."""

    __slots__ = (
        "callers",
        "config",
        "context_length",
        "hooks",
        "load_error",
        "name",
        "replicas",
        "started",
        "status",
    )

    def __init__(self, name: str, hooks: Any, config: BackendConfig | None) -> None:
        self.name = name
        self.hooks = hooks
        self.load_error: str | None = None
        self.started = False
        self.status = BackendStatus()
        self.callers: dict[str, Any] = {}
        if hooks is not None:
            for op in OPS:
                self.callers[op] = getattr(hooks, op, None)
        self.config = config or BackendConfig(name=name)
        self.context_length: int | None = None
        """The backend's context window (option ``context_length``), when known."""
        self.replicas: ReplicaSet  # set by Router._configure

    @property
    def usable(self) -> bool:
        """Loaded and started without error: requests may be sent to it."""
        return self.load_error is None and self.hooks is not None

    def __repr__(self) -> str:
        return f"<backend {self.name}>"


def scrub(text: str, config: BackendConfig) -> str:
    """``text`` without the backend's API key, secret options or URL credentials."""
    secret = config.secret()
    if secret and secret in text:
        text = text.replace(secret, "****")
    for value in config.options.values():
        if hasattr(value, "get_secret_value"):
            s = value.get_secret_value()
            if s and s in text:
                text = text.replace(s, "****")
    return strip_credentials(text)
