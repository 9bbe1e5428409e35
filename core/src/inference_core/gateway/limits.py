"""Who may call, what they may use, and how much: the per-request access check.

:class:`Access` combines the :class:`~.keys.KeyRing` (who), the key's allowed models (what) and
the state backend's limits (how much, :mod:`inference_core.state`):

* ``access.identify(authorization, x_api_key)``: the key record, from ``Authorization: Bearer
  <key>`` or ``x-api-key: <key>`` (the Anthropic protocol's header).  401 ``invalid_api_key``
  for an unknown key, 401 ``expired_api_key`` after its expiry.  With no key configured at all
  the gateway is open and every request is the key ``anonymous`` (no limits; usage still
  counted).
* ``await access.admit(record, model, ticket)``: 403 ``model_not_allowed`` when the key may not
  use ``model`` (the model exists, the key is not allowed it: a 403 says so rather than
  pretending with a 404); 429 ``<limit>_limit_exceeded`` (``rpm``, ``tpm``, ``parallel``) or
  ``budget_exceeded`` with ``Retry-After`` when a limit is reached; 503
  ``state_unavailable`` when Redis is down and ``INFERENCE_REDIS_FAIL=closed``.  Returns a
  :class:`Grant`.
* ``access.settle(grant, trace, model)``: exactly once per grant when the request ends: frees
  the parallel slot, counts the tokens (tpm, budget, usage per key/model/backend, Prometheus).

Per request, in-process: one SHA-256, a few dict operations, no lock, no extra JSON parse.
"""

from __future__ import annotations

import math
from typing import Any

from ..state.base import NO_LIMITS, LimitExceeded, StateUnavailable
from .errors import GatewayError
from .keys import KeyRecord, KeyRing

__all__ = ["ANONYMOUS", "Access", "Grant", "token_of"]

ANONYMOUS = KeyRecord(name="anonymous", hash="-")
_LIMIT_TYPES = {"rpm": "requests", "parallel": "requests", "tpm": "tokens", "budget": "tokens"}


def token_of(authorization: bytes | None, x_api_key: bytes | None) -> bytes | None:
    """The secret a client sent: ``Authorization: Bearer <key>``, else ``x-api-key``."""
    if authorization and len(authorization) > 7:
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() == b"bearer":
            token = token.strip()
            if token:
                return token
    if x_api_key:
        return x_api_key.strip() or None
    return None


class Grant:
    """An admitted request: whose, under which limits, with which ticket."""

    __slots__ = ("limits", "name", "ticket")

    def __init__(self, name: str, limits: Any, ticket: str) -> None:
        self.name = name
        self.limits = limits
        self.ticket = ticket


def _unauthorized(message: str, code: str) -> GatewayError:
    return GatewayError(401, message, code=code)


class Access:
    """The access check of one gateway app (see the module docstring)."""

    def __init__(
        self,
        ring: KeyRing,
        state: Any,
        *,
        admin_keys: tuple[str, ...] = (),
        metrics: Any = None,
        clock: Any = None,
    ) -> None:
        import time

        from .keys import hash_secret

        self.ring = ring
        self.state = state
        self.enabled = ring.enabled
        self.metrics = metrics
        self._clock = clock or time.time
        self._admin = frozenset(hash_secret(k) for k in admin_keys if k)

    # ------------------------------------------------------------------------ identify

    def check(self, authorization: bytes | None, x_api_key: bytes | None = None) -> bool:
        """True when the request carries a valid key (or the gateway is open): the check the
        non-inference routes (health, metrics) make."""
        if not self.enabled:
            return True
        token = token_of(authorization, x_api_key)
        if token is None:
            return False
        record = self.ring.lookup(token)
        return record is not None and not record.expired(self._clock())

    def record_of(
        self, authorization: bytes | None, x_api_key: bytes | None = None
    ) -> KeyRecord | None:
        """The key record of a request that passed :meth:`check` (``ANONYMOUS`` when the
        gateway is open), or ``None``: what the model list is filtered by."""
        if not self.enabled:
            return ANONYMOUS
        token = token_of(authorization, x_api_key)
        return None if token is None else self.ring.lookup(token)

    async def identify(
        self,
        authorization: bytes | None,
        x_api_key: bytes | None = None,
        hint: str = "'Authorization: Bearer <key>' or 'x-api-key: <key>'",
    ) -> KeyRecord:
        """The caller's key record; raises a 401 :class:`GatewayError` (``hint``: how to send
        a key, in the protocol's own words)."""
        if not self.enabled:
            return ANONYMOUS
        token = token_of(authorization, x_api_key)
        record = None
        if token is not None:
            record = self.ring.lookup(token)
            if record is None:
                record = await self.ring.lookup_miss(token)
        if record is None:
            raise _unauthorized(
                f"Missing or invalid API key for this gateway (send {hint}).", "invalid_api_key"
            )
        if record.expires is not None and record.expired(self._clock()):
            raise _unauthorized(f"The API key '{record.name}' has expired.", "expired_api_key")
        return record

    def is_admin(self, authorization: bytes | None, x_api_key: bytes | None = None) -> bool:
        """True when the request carries one of ``INFERENCE_ADMIN_KEYS``."""
        if not self._admin:
            return False
        token = token_of(authorization, x_api_key)
        if token is None:
            return False
        from .keys import hash_secret

        return hash_secret(token) in self._admin

    # --------------------------------------------------------------------------- admit

    async def admit(self, record: KeyRecord, model: str | None, ticket: str) -> Grant:
        """Check the key's models and limits; see the module docstring for the errors."""
        if record.models and not record.allows(model):
            raise GatewayError(
                403,
                f"The API key '{record.name}' may not use the model '{model}'.",
                type="permission_error",
                param="model",
                code="model_not_allowed",
            )
        limits = record.limits
        if limits is not NO_LIMITS and limits.any:
            try:
                await self.state.admit(record.name, limits, ticket)
            except LimitExceeded as exc:
                if self.metrics is not None:
                    self.metrics.limit_rejected(record.name, exc.limit)
                raise _limit_error(record.name, exc) from None
            except StateUnavailable:
                raise GatewayError(
                    503,
                    "The gateway's shared state (Redis) is unreachable; limits cannot be "
                    "checked (INFERENCE_REDIS_FAIL=closed).",
                    type="service_unavailable",
                    code="state_unavailable",
                ) from None
        return Grant(record.name, limits, ticket)

    def settle(self, grant: Grant, backend: str | None, model: str | None, usage: Any) -> None:
        """The request of ``grant`` ended (any outcome): free its slot, count its tokens."""
        prompt = completion = 0
        if usage is not None:
            prompt = getattr(usage, "prompt_tokens", 0) or 0
            completion = getattr(usage, "completion_tokens", 0) or 0
        backend = backend or "none"
        model = model or "unknown"
        if backend == "none" and not grant.limits.parallel:
            return  # nobody served it: nothing to count, no slot to free
        self.state.settle(grant.name, grant.limits, grant.ticket, model, backend, prompt,
                          completion)  # fmt: skip
        if self.metrics is not None and (prompt or completion):
            self.metrics.key_tokens(grant.name, model, backend, prompt, completion)


def _limit_error(name: str, exc: LimitExceeded) -> GatewayError:
    seconds = exc.retry_after
    if exc.limit == "budget":
        message = f"The API key '{name}' has used its {exc.detail}; retry after {seconds} s."
        code = "budget_exceeded"
    else:
        message = (
            f"Rate limit reached for the API key '{name}': {exc.detail} ({exc.limit}); "
            f"retry after {seconds} s."
        )
        code = f"{exc.limit}_limit_exceeded"
    return GatewayError(
        429,
        message,
        type=_LIMIT_TYPES.get(exc.limit, "rate_limit_error"),
        code=code,
        headers=[
            (b"retry-after", str(max(1, math.ceil(seconds))).encode()),
            (b"x-inference-limit", exc.limit.encode()),
        ],
    )
