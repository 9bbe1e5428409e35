"""The router's resilience policy: retries, backoff, deadlines, breaker, context fallback.

``settings.py`` builds a :class:`RouterPolicy` from the ``INFERENCE_*`` resilience variables;
tests and embedding apps may build one directly.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RESUME_MODES", "RouterPolicy"]

#: INFERENCE_STREAM_RESUME's values (docs/resilience.md, "Resuming a cut stream").
RESUME_MODES = ("off", "same-model", "any-model")


@dataclass(frozen=True)
class RouterPolicy:
    """How hard the router tries, and for how long. All durations in seconds."""

    max_retries: int = 2
    """INFERENCE_MAX_RETRIES: extra tries of the same backend, for retryable errors only."""
    backoff_base: float = 0.25
    """INFERENCE_RETRY_BACKOFF: first backoff ceiling; doubles per retry (full jitter)."""
    backoff_max: float = 4.0
    """INFERENCE_RETRY_BACKOFF_MAX: largest backoff ceiling."""
    retry_after_cap: float = 10.0
    """INFERENCE_RETRY_AFTER_CAP: longest ``Retry-After`` honoured; longer means fall back now."""
    request_deadline: float = 120.0
    """INFERENCE_REQUEST_DEADLINE: bounds every retry and fallback of one request together."""
    first_token_timeout: float = 60.0
    """INFERENCE_FIRST_TOKEN_TIMEOUT: a non-stream answer, or a stream's first chunk."""
    idle_timeout: float = 30.0
    """INFERENCE_IDLE_TIMEOUT: longest silence between two chunks of a stream."""
    breaker_threshold: int = 3
    """INFERENCE_BREAKER_THRESHOLD: failures within the window that open the breaker."""
    breaker_window: float = 30.0
    """INFERENCE_BREAKER_WINDOW: the sliding window failures are counted in."""
    breaker_cooldown: float = 10.0
    """INFERENCE_BREAKER_COOLDOWN: how long an open breaker stays open before a half-open trial."""
    breaker_failure_rate: float = 0.25
    """INFERENCE_BREAKER_FAILURE_RATE: failure fraction over the window that opens the breaker
    too (0 = off), once ``breaker_min_requests`` ended in the window."""
    breaker_min_requests: int = 20
    """INFERENCE_BREAKER_MIN_REQUESTS: requests in the window before the rate counts."""
    context_fallback: bool = True
    """INFERENCE_CONTEXT_FALLBACK: on context-length errors, try a larger-context backend."""
    stream_resume: str = "same-model"
    """INFERENCE_STREAM_RESUME: continue a stream cut after its first chunk elsewhere: ``off``,
    ``same-model`` (another replica, or a backend serving the same model) or ``any-model``."""
    stream_resume_max: int = 1
    """INFERENCE_STREAM_RESUME_MAX: most resumes of one stream (0 turns resuming off)."""

    def __post_init__(self) -> None:
        for name in (
            "backoff_base",
            "backoff_max",
            "retry_after_cap",
            "breaker_window",
            "breaker_cooldown",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("request_deadline", "first_token_timeout", "idle_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.stream_resume not in RESUME_MODES:
            raise ValueError(f"stream_resume must be one of {', '.join(RESUME_MODES)}")
        if self.stream_resume_max < 0:
            raise ValueError("stream_resume_max must be >= 0")
        if self.breaker_threshold < 1:
            raise ValueError("breaker_threshold must be >= 1")
        if not 0 <= self.breaker_failure_rate <= 1:
            raise ValueError("breaker_failure_rate must be between 0 and 1")
        if self.breaker_min_requests < 1:
            raise ValueError("breaker_min_requests must be >= 1")
