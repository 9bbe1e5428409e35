"""What happened to one request: filled by the router, read by the gateway, the CLI, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Attempt
from ..models import Usage

__all__ = ["RequestTrace"]


@dataclass
class RequestTrace:
    """What happened to one request; filled by the router, read by the gateway/CLI/metrics."""

    request_id: str = ""
    backend: str | None = None
    """The backend that served (None when none did)."""
    model: str | None = None
    """The model that answered: the name that backend was asked for (for ``default``, the
    name the backend reported in its answer when it did)."""
    attempts: list[Attempt] = field(default_factory=list)
    """Every failed try, in order (the successful one is not listed)."""
    retries: int = 0
    fallbacks: int = 0
    usage: Usage | None = None
    """Token usage when known (a non-stream answer, or the stream's usage chunk)."""
    resumes: list[Any] | None = None
    """A stream cut after its first chunk: each resume tried
    (:class:`~inference_core.routing.resume.StreamResume`), None when there was none."""
