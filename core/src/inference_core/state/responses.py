"""The Responses store over a state backend: shared by every worker and replica with Redis.

:class:`SharedResponseStore` implements the Responses protocol's store interface
(``inference_core.protocols.store.ResponseStore``: async ``get``, ``put``, ``delete`` of
``StoredResponse`` records) on :meth:`put_response` / :meth:`get_response` /
:meth:`delete_response` of a state backend, each record one JSON value with a TTL (in Redis:
``<prefix>resp:<id>``, so a follow-up with ``previous_response_id`` may land on any replica).
The gateway uses it instead of the in-process store when ``INFERENCE_REDIS_URL`` is set
(:meth:`inference_core.gateway.teams.Teams.response_store`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["SharedResponseStore"]


def _stored_response_class() -> Callable[..., Any]:
    from ..protocols.store import StoredResponse  # type: ignore[import-not-found]

    return StoredResponse  # type: ignore[no-any-return]


class SharedResponseStore:
    """See the module docstring.  ``record_cls`` builds a record from its fields (default:
    ``StoredResponse``); ``ttl`` seconds a response is kept."""

    def __init__(
        self, state: Any, ttl: float = 3600.0, record_cls: Callable[..., Any] | None = None
    ) -> None:
        self.state = state
        self.ttl = ttl
        self._cls = record_cls

    def _record(self, data: dict[str, Any]) -> Any:
        if self._cls is None:
            self._cls = _stored_response_class()
        return self._cls(**data)

    async def get(self, response_id: str) -> Any:
        raw = await self.state.get_response(response_id)
        if raw is None:
            return None
        return self._record(orjson.loads(raw))

    async def put(self, record: Any) -> None:
        data = dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(record)
        await self.state.put_response(data["id"], orjson.dumps(data), self.ttl)

    async def delete(self, response_id: str) -> bool:
        return bool(await self.state.delete_response(response_id))
