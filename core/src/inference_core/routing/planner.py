"""The planner: the model a request names -> the ordered (backend, model) steps to try.

The rule (``docs/routing.md`` has it with examples):

* ``default`` or no model: every backend of the chain (provider, then ``FALLBACK_CHAIN``),
  each with its own default model;
* ``<backend>/<model>``, where ``<backend>`` is a configured backend name: that backend only
  (404 when it is known not to serve the model); then the declared model fallbacks;
* a model one or more backends serve (listed, declared, aliased, implicit ``:latest``): those
  backends in chain order, then the backends that may serve any name (``*``, or their models
  are not known); with ``ENABLE_FALLBACK`` the declared model fallbacks
  (``INFERENCE_MODEL_FALLBACKS``); then, unless ``INFERENCE_STRICT_MODELS``, the rest of the
  chain with their default models;
* a model nobody serves, no alias names and no fallback is declared for: :class:`Miss` (the
  router refreshes the catalog once and then answers 404 ``model_not_found``).

A plan depends only on the name and the catalog, so plans are cached per name until the
catalog changes; health, breakers and rate limits reorder the steps per request (the
executor's job).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .backend import BackendEntry
from .catalog import ModelCatalog

__all__ = ["Miss", "Planner", "Step"]

_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Step:
    """One backend to try, and the model name to send it."""

    backend: BackendEntry
    model: str
    fallback: bool = False
    """True for a declared model fallback or the rest of the chain (another model than asked)."""


@dataclass(frozen=True, slots=True)
class Miss:
    """Nobody serves the name (``backend``: the one a ``backend/model`` name selected)."""

    name: str
    backend: BackendEntry | None = None


class Planner:
    """Builds (and caches) plans; see the module docstring.

    ``chain``: the usable backends in chain order; ``configured``: every configured name ->
    its entry (usable or not); ``fallbacks``: model -> its fallback targets (model names or
    ``backend/model``).
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        chain: Iterable[BackendEntry],
        configured: Mapping[str, BackendEntry],
        *,
        fallbacks: Mapping[str, tuple[str, ...]] | None = None,
        enable_fallback: bool = True,
        strict: bool = False,
    ) -> None:
        self.catalog = catalog
        self.chain = list(chain)
        self.configured = dict(configured)
        self.fallbacks = dict(fallbacks or {})
        self.enable_fallback = enable_fallback
        self.strict = strict
        self._cache: dict[str | None, tuple[Step, ...] | Miss] = {}
        self._version = -1

    def set_chain(self, chain: Iterable[BackendEntry]) -> None:
        """The usable backends changed (start-up failures): forget cached plans."""
        self.chain = list(chain)
        self._cache.clear()

    def plan(self, requested: str | None) -> tuple[Step, ...] | Miss:
        """The steps for ``requested`` (cached), or a :class:`Miss`."""
        if self._version != self.catalog.version:
            self._cache.clear()
            self._version = self.catalog.version
        found = self._cache.get(requested)
        if found is not None:
            return found
        result = self._build(requested or "default")
        if not isinstance(result, Miss):  # misses are not cached: the catalog may learn it
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[requested] = result
        return result

    # ---------------------------------------------------------------------------- building

    def _build(self, name: str) -> tuple[Step, ...] | Miss:
        catalog = self.catalog
        if name == "default":
            steps = [Step(b, catalog.default_model(b)) for b in self.chain]
            return self._finish(steps, name, rest=False)
        head, sep, model = name.partition("/")
        if sep and head in self.configured:
            backend = self.configured[head]
            if backend not in self.chain:  # failed to load: the executor reports why
                return ()
            if model in ("", "default"):
                target: str | None = catalog.default_model(backend)
            else:
                target = catalog.lookup(backend, model)
            if target is None:  # the client chose a backend that does not have it: a 404
                return Miss(name, backend)
            return self._finish([Step(backend, target)], name, rest=False, also=model)
        steps = [Step(b, model_id) for b, model_id in catalog.servers(name) if b in self.chain]
        used = {s.backend.name for s in steps}
        steps += [Step(b, name) for b in catalog.open_backends if b.name not in used]
        if not steps and not (self.enable_fallback and self._targets(name)):
            return Miss(name)
        return self._finish(steps, name, rest=not self.strict)

    def _targets(self, *keys: str) -> tuple[str, ...]:
        for key in keys:
            if key in self.fallbacks:
                return self.fallbacks[key]
        return ()

    def _finish(
        self, steps: list[Step], name: str, *, rest: bool, also: str | None = None
    ) -> tuple[Step, ...]:
        seen = {(s.backend.name, s.model) for s in steps}

        def add(step: Step) -> None:
            key = (step.backend.name, step.model)
            if key not in seen:
                seen.add(key)
                steps.append(step)

        if self.enable_fallback:
            keys = (name,) if also is None else (name, also)
            for target in self._targets(*keys):
                for step in self._resolve(target):
                    add(step)
        if rest:
            used = {s.backend.name for s in steps}
            for b in self.chain:
                if b.name not in used:
                    add(Step(b, self.catalog.default_model(b), fallback=True))
        return tuple(steps)

    def _resolve(self, target: str) -> list[Step]:
        """A fallback target -> its steps (``backend/model``, or every server of a model)."""
        head, sep, model = target.partition("/")
        if sep and head in self.configured:
            backend = self.configured[head]
            if backend not in self.chain:
                return []
            if model in ("", "default"):
                return [Step(backend, self.catalog.default_model(backend), fallback=True)]
            model_id = self.catalog.lookup(backend, model) or model
            return [Step(backend, model_id, fallback=True)]
        if target == "default":
            return [Step(b, self.catalog.default_model(b), fallback=True) for b in self.chain]
        servers = [
            Step(b, model_id, fallback=True)
            for b, model_id in self.catalog.servers(target)
            if b in self.chain
        ]
        used = {s.backend.name for s in servers}
        return servers + [
            Step(b, target, fallback=True)
            for b in self.catalog.open_backends
            if b.name not in used and b in self.chain
        ]
