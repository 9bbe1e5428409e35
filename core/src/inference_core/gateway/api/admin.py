"""The admin routes (``docs/teams.md``), behind one of ``INFERENCE_ADMIN_KEYS``:

* ``GET /v1/admin/usage?period=day|week|month[&key=NAME][&date=YYYY-MM-DD]``: tokens and
  requests per key, model and backend over the period;
* ``GET /v1/admin/keys``: every key's models, limits, expiry, metadata and budget used (never a
  secret or its hash).

401 ``invalid_admin_key`` without an admin key (as Bearer or ``x-api-key``).
"""

from __future__ import annotations

from ..pipeline import Gateway, Receive, Route, Scope, Send, alt_key

__all__ = ["routes"]


def routes(gateway: Gateway) -> list[Route]:
    """The admin routes of ``gateway``."""
    teams = gateway.teams

    def _auth(scope: Scope) -> None:
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        teams.check_admin(auth, alt_key(scope, auth))

    async def admin_usage(scope: Scope, receive: Receive, send: Send) -> None:
        """Token usage per key (and model, backend) for a period; needs an admin key."""

        async def produce() -> tuple[int, bytes]:
            _auth(scope)
            return await teams.usage_body(scope.get("query_string", b""))

        await gateway.simple(scope, send, "admin", produce, protected=False)

    async def admin_keys(scope: Scope, receive: Receive, send: Send) -> None:
        """Every key's settings and budget used (never a secret); needs an admin key."""

        async def produce() -> tuple[int, bytes]:
            _auth(scope)
            return await teams.keys_body()

        await gateway.simple(scope, send, "admin", produce, protected=False)

    return [
        Route("/v1/admin/usage", ("GET",), admin_usage, "Usage per key for a period (admin)"),
        Route("/v1/admin/keys", ("GET",), admin_keys, "Keys, limits and budget used (admin)"),
    ]
