"""The model catalog: which backend serves which model, under which names.

Per backend the catalog holds:

* the models its ``list_models`` hook reported (refreshed when the backend turns ready, after
  each of its health checks, and, on a request for a name nobody serves, at most every
  ``refresh_gap`` seconds);
* the models declared with ``INFERENCE_<NAME>_MODELS`` (names, merged with the listing), or
  ``*``: the backend accepts any name (a server that cannot list, or one that serves whatever
  it is asked for);
* its aliases (``INFERENCE_<NAME>_ALIASES``: ``alias=model``) and its default model
  (``INFERENCE_<NAME>_MODEL``, else ``"default"``, which its plugin resolves).

A backend whose models are not known (no ``list_models`` hook, or no listing has succeeded yet,
and nothing declared) is *open*: the planner may send it any name, after the backends known to
serve the name.  A lookup is a dict read: no network call on the hot path.

Names a backend answers to: its listed ids, their implicit forms (Ollama's ``name`` for
``name:latest`` and the reverse), its declared names and its aliases.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..errors import InferenceError, ModelNotFound
from ..models import ModelInfo
from .backend import BackendEntry

__all__ = ["BackendModels", "ModelCatalog"]

logger = logging.getLogger("inference_core.catalog")

WILDCARD = "*"
_LATEST = ":latest"

Lister = Callable[[BackendEntry], Awaitable[list[ModelInfo] | None]]
"""``lister(backend)``: that backend's ``list_models`` answer (None: it has no such hook);
raises on failure."""


class BackendModels:
    """What the catalog knows of one backend."""

    __slots__ = ("declared", "error", "infos", "listed", "listed_at", "names", "task", "wildcard")

    def __init__(self) -> None:
        self.infos: dict[str, ModelInfo] = {}
        """Listed id -> what ``list_models`` said of it."""
        self.names: dict[str, str] = {}
        """Every name the backend answers to (aliases aside) -> the id to send it."""
        self.listed = False
        """A listing succeeded at least once."""
        self.listed_at: float | None = None
        self.wildcard = False
        self.declared = False
        """Models were declared (``INFERENCE_<NAME>_MODELS``): the backend is not open."""
        self.error: str | None = None
        """Why the last listing failed (None when it did not)."""
        self.task: asyncio.Task[None] | None = None


def _names_for(ids: Iterable[str]) -> dict[str, str]:
    """Each id, plus its implicit form (``name`` <-> ``name:latest``), mapped to the id."""
    names: dict[str, str] = {}
    for model_id in ids:
        names[model_id] = model_id
    for model_id in list(names):
        if model_id.endswith(_LATEST):
            names.setdefault(model_id[: -len(_LATEST)], model_id)
        elif ":" not in model_id.rsplit("/", 1)[-1]:
            names.setdefault(model_id + _LATEST, model_id)
    return names


def _declared(backend: BackendEntry) -> list[str]:
    """The names a backend serves by configuration: ``_MODELS`` entries and its default."""
    names = [m for m in backend.config.models if m != WILDCARD]
    if backend.config.model:
        names.append(backend.config.model)
    return names


class ModelCatalog:
    """Which backend serves which model; see the module docstring.

    ``backends`` are the usable chain entries in chain order; ``lister`` asks one of them for
    its models; ``timeout`` bounds one listing; ``refresh_gap`` is the shortest time between
    two refreshes caused by a request for an unknown name.
    """

    def __init__(
        self,
        backends: Iterable[BackendEntry],
        lister: Lister,
        *,
        timeout: float = 5.0,
        refresh_gap: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lister = lister
        self.timeout = timeout
        self.refresh_gap = refresh_gap
        self._clock = clock
        self._last_miss_refresh = float("-inf")
        self._miss_lock: asyncio.Lock | None = None
        self._closed = False
        self.version = 0
        """Bumped on every change; the planner's cache is keyed on it."""
        self._backends: list[BackendEntry] = []
        self._models: dict[str, BackendModels] = {}
        self._servers: dict[str, list[tuple[BackendEntry, str]]] = {}
        self._open: list[BackendEntry] = []
        self.set_backends(backends)

    # ------------------------------------------------------------------------- set-up

    def set_backends(self, backends: Iterable[BackendEntry]) -> None:
        """(Re)declare the usable backends, in chain order (after start-up, for example)."""
        self._backends = list(backends)
        for b in self._backends:
            entry = self._models.setdefault(b.name, BackendModels())
            declared = _declared(b)
            entry.wildcard = WILDCARD in b.config.models
            entry.declared = any(m != WILDCARD for m in b.config.models)
            if not entry.listed:
                entry.names = _names_for(declared)
        self._reindex()

    def _reindex(self) -> None:
        servers: dict[str, list[tuple[BackendEntry, str]]] = {}
        open_: list[BackendEntry] = []
        for b in self._backends:
            entry = self._models[b.name]
            for name, model_id in entry.names.items():
                servers.setdefault(name, []).append((b, model_id))
            for alias, target in b.config.aliases.items():
                pairs = servers.setdefault(alias, [])
                pairs[:] = [p for p in pairs if p[0] is not b]  # an alias wins over a listing
                pairs.append((b, entry.names.get(target, target)))
            if entry.wildcard or not (entry.listed or entry.declared):
                open_.append(b)
        # chain order, except that a backend declaring the name as an alias (the operator's
        # explicit routing) comes before those that merely list it
        order = {b.name: i for i, b in enumerate(self._backends)}
        for name, pairs in servers.items():
            pairs.sort(key=lambda p, n=name: (n not in p[0].config.aliases, order[p[0].name]))
        self._servers = servers
        self._open = open_
        self.version += 1

    # ------------------------------------------------------------------------- lookups

    def servers(self, name: str) -> list[tuple[BackendEntry, str]]:
        """The backends known to serve ``name``, each with the id to send: those that declare
        it as an alias first, then those that list it, each group in chain order."""
        return self._servers.get(name, [])

    def lookup(self, backend: BackendEntry, name: str) -> str | None:
        """The id to send ``backend`` for ``name``; None when it is known not to serve it."""
        for b, model_id in self._servers.get(name, ()):
            if b is backend:
                return model_id
        entry = self._models.get(backend.name)
        if entry is None or entry.wildcard or backend in self._open:
            return name
        return None

    def is_open(self, backend: BackendEntry) -> bool:
        """True when ``backend`` may serve any name (``*``, or its models are not known)."""
        return backend in self._open

    @property
    def open_backends(self) -> list[BackendEntry]:
        """The backends that may serve any name, in chain order."""
        return self._open

    def default_model(self, backend: BackendEntry) -> str:
        """The name a ``default`` request sends ``backend``."""
        return backend.config.model_for("default")

    def context_length(self, backend: BackendEntry, model: str) -> int | None:
        """The context window of ``model`` on ``backend`` when listed, else the backend's."""
        entry = self._models.get(backend.name)
        info = entry.infos.get(model) if entry is not None else None
        size = getattr(info, "context_length", None) if info is not None else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size
        return backend.context_length

    def close_names(self, name: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` served names that look like ``name`` (for a 404's message); none
        for a name longer than any model name (comparing it would only cost time)."""
        if len(name) > 256:
            return []
        candidates = set(self._servers)
        for b in self._backends:
            entry = self._models[b.name]
            candidates.update(f"{b.name}/{m}" for m in entry.infos)
        lowered = {c.lower(): c for c in candidates}
        found = difflib.get_close_matches(name.lower(), list(lowered), n=limit, cutoff=0.5)
        return [lowered[f] for f in found]

    def not_found(self, name: str, backend: BackendEntry | None = None) -> ModelNotFound:
        """The 404 for a name nobody (or ``backend``) serves, naming up to five close names."""
        shown = name if len(name) <= 120 else name[:117] + "..."
        where = f"on backend {backend.name!r}" if backend is not None else "on any backend"
        return ModelNotFound(
            f"The model {shown!r} does not exist {where}",
            model=name,
            backend=backend.name if backend is not None else None,
            suggestions=tuple(self.close_names(name)),
            tail=" (GET /v1/models lists them)",
        )

    # ------------------------------------------------------------------------- listing

    def models(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: each model once per backend that serves it, in chain order.

        Fields: ``id``, ``object``, ``created``, ``owned_by`` (the backend), ``backend``,
        ``aliases`` (the backend's aliases for it) and ``context_length`` when known.
        """
        out: list[dict[str, Any]] = []
        for b in self._backends:
            entry = self._models[b.name]
            aliases: dict[str, list[str]] = {}
            for alias, target in b.config.aliases.items():
                aliases.setdefault(entry.names.get(target, target), []).append(alias)
            ids = list(entry.infos) + [m for m in _declared(b) if m not in entry.infos]
            ids += [t for t in aliases if t not in ids]
            for model_id in dict.fromkeys(ids):
                info = entry.infos.get(model_id)
                item: dict[str, Any] = {
                    "id": model_id,
                    "object": "model",
                    "created": int(getattr(info, "created", 0) or 0),
                    "owned_by": b.name,
                    "backend": b.name,
                }
                if aliases.get(model_id):
                    item["aliases"] = aliases[model_id]
                size = self.context_length(b, model_id) if info is not None else None
                if size:
                    item["context_length"] = size
                out.append(item)
        return out

    def listed_at(self, backend: BackendEntry) -> float | None:
        """When ``backend``'s models were last listed (the catalog's clock), None if never."""
        entry = self._models.get(backend.name)
        return entry.listed_at if entry is not None else None

    def report(self, backend: BackendEntry) -> dict[str, Any]:
        """For health output: how many models are known, since when, and the last error."""
        entry = self._models.get(backend.name)
        if entry is None:
            return {"models_known": False}
        return {
            "models_known": entry.listed or entry.declared or entry.wildcard,
            "accepts_any_model": entry.wildcard or backend in self._open,
            "models_error": entry.error,
        }

    # ------------------------------------------------------------------------- refreshing

    def schedule(self, backend: BackendEntry) -> None:
        """Refresh ``backend``'s models in the background (no-op while one runs)."""
        entry = self._models.get(backend.name)
        if entry is None or self._closed or (entry.task is not None and not entry.task.done()):
            return
        entry.task = asyncio.create_task(self.refresh(backend), name=f"models:{backend.name}")

    async def refresh(self, backend: BackendEntry) -> None:
        """List ``backend``'s models now and update the catalog. Never raises."""
        entry = self._models.get(backend.name)
        if entry is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                infos = await self._lister(backend)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(backend, entry, exc)
            return
        if infos is None:  # no list_models hook: the declared models are all there is
            return
        listed = {m.id: m for m in infos if isinstance(m, ModelInfo) and m.id}
        names = _names_for([*listed, *_declared(backend)])
        changed = not entry.listed or names != entry.names or listed.keys() != entry.infos.keys()
        entry.infos = listed
        entry.listed = True
        entry.listed_at = self._clock()
        if entry.error is not None:
            logger.info("backend %s: models listed again (%d)", backend.name, len(listed))
        entry.error = None
        if changed:
            entry.names = names
            logger.info(
                "backend %s serves %d model(s): %s",
                backend.name,
                len(listed),
                ", ".join(list(listed)[:10]) + (" ..." if len(listed) > 10 else ""),
            )
            self._reindex()
        else:
            entry.infos = listed

    def _failed(self, backend: BackendEntry, entry: BackendModels, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            error = f"listing models timed out after {self.timeout:g}s"
        elif isinstance(exc, InferenceError):
            error = f"listing models failed: {exc.kind} ({exc.message})"
            if getattr(exc, "status", None) == 404:  # listing has no model to miss: a bad path
                error = (
                    "listing models answered 404: the base URL looks wrong "
                    f"(check INFERENCE_{backend.name.upper()}_BASE_URL: the server's root "
                    "such as http://host:8000, or its /v1 URL)"
                )
        else:
            error = f"listing models failed: {type(exc).__name__}"
        if error != entry.error:
            level = logging.WARNING if "404" in error else logging.INFO
            logger.log(level, "backend %s: %s", backend.name, error)
        entry.error = error

    async def refresh_all(self, *, max_age: float | None = None) -> None:
        """Refresh every backend (those listed within ``max_age`` seconds are kept)."""
        now = self._clock()
        stale = [
            b
            for b in self._backends
            if max_age is None
            or self._models[b.name].listed_at is None
            or now - (self._models[b.name].listed_at or 0.0) > max_age
        ]
        if stale:
            await asyncio.gather(*(self.refresh(b) for b in stale))

    async def refresh_on_miss(self) -> bool:
        """A request named an unknown model: refresh everything, at most every
        ``refresh_gap`` seconds.  True when a refresh ran (the caller may plan again)."""
        if self._miss_lock is None:
            self._miss_lock = asyncio.Lock()
        async with self._miss_lock:
            if self._clock() - self._last_miss_refresh < self.refresh_gap:
                return False
            version = self.version
            await self.refresh_all()
            self._last_miss_refresh = self._clock()
            return self.version != version

    async def aclose(self) -> None:
        """Cancel background refreshes."""
        self._closed = True
        tasks = [e.task for e in self._models.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for e in self._models.values():
            e.task = None

    def reopen(self) -> None:
        """Allow background refreshes again (after :meth:`aclose`, for a restarted router)."""
        self._closed = False
