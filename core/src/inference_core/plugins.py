"""Backend plugins: discovery through entry points, loading, and one-backend dispatch.

A backend plugin is a distribution that declares an entry point in the group
``inference_core.backends``; the entry-point name is the backend name used in
``INFERENCE_PROVIDER`` / ``FALLBACK_CHAIN``, its value a module or object whose ``async def``
methods carry ``@inference_core.hookimpl``.

Only the backends the configuration names are loaded, one entry point at a time, each in its
own ``try``: an unknown name is a :class:`ConfigError` listing the installed backends; a plugin
that fails to import, has a non-async hook or a misspelled one is reported (``LoadReport.error``,
naming its distribution) and skipped; :class:`PluginLoadError` is raised only when no backend of
the chain loads.

Dispatch goes to exactly one backend: each backend is registered under its own name, and for
each backend and hook :meth:`pluggy.PluginManager.subset_hook_caller` removes the *other*
backends, built once.  Plugins that are not backends (metrics, tracing, redaction) register on
the same manager with ``wrapper=True`` hooks (:meth:`PluginSet.add_core_plugin`) and so run
around every call of every backend.  Register no further *backend* after loading.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginLoadError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendHooks",
    "LoadReport",
    "PluginSet",
    "inspect_installed",
    "installed_backends",
    "load_backends",
    "normalize_distribution",
]

ENTRY_POINT_GROUP = "inference_core.backends"
logger = logging.getLogger("inference_core.plugins")
_IMPL_ATTR = f"{hookspecs.PROJECT_NAME}_impl"


@dataclass
class LoadReport:
    """What happened to one backend: where it came from, its hooks, or why it did not load."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    entry_point: str | None = None  # "module:attr", or None for an in-memory plugin

    @property
    def loaded(self) -> bool:
        return self.error is None


@dataclass
class BackendHooks:
    """The hook callers of ONE backend (subset hook callers that exclude the other backends).

    ``coro = hooks.chat(request=req, config=cfg, http=client)`` then ``await coro``; the call
    returns ``None`` when the backend does not implement the hook (check :meth:`implements`).
    """

    name: str
    plugin: Any
    chat: pluggy.HookCaller
    complete: pluggy.HookCaller
    embed: pluggy.HookCaller
    health: pluggy.HookCaller
    list_models: pluggy.HookCaller
    startup: pluggy.HookCaller
    shutdown: pluggy.HookCaller
    hook_names: frozenset[str] = frozenset()

    def implements(self, hook: str) -> bool:
        """True when the backend itself implements ``hook`` (core wrappers do not count)."""
        return hook in self.hook_names

    def caller(self, hook: str) -> pluggy.HookCaller:
        return getattr(self, hook)


@dataclass
class PluginSet:
    """The loaded backends, in chain order, plus a report for every backend asked for."""

    pm: pluggy.PluginManager
    backends: dict[str, BackendHooks] = field(default_factory=dict)
    reports: list[LoadReport] = field(default_factory=list)

    def report(self, name: str) -> LoadReport | None:
        return next((r for r in self.reports if r.name == name), None)

    @property
    def errors(self) -> dict[str, str]:
        """Backend name -> load error, for the backends that did not load."""
        return {r.name: r.error for r in self.reports if r.error}

    def add_core_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a non-backend plugin (its hooks should be ``wrapper=True``): it then runs
        around every call of every backend."""
        impls = _hook_implementations(plugin)
        plain = [
            h
            for h, (_, opts) in impls.items()
            if not (opts.get("wrapper") or opts.get("hookwrapper"))
        ]
        if plain:
            raise PluginLoadError(
                f"core plugin {name or plugin!r} implements {', '.join(plain)} without "
                "wrapper=True: it would compete with the backends"
            )
        self.pm.register(plugin, name=name)
        self.pm.check_pending()


def normalize_distribution(name: str) -> str:
    """PEP 503 normalisation (``Inference_Echo`` == ``inference-echo``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_backends() -> dict[str, EntryPoint]:
    """Entry-point name -> entry point, for every installed backend plugin (nothing imported)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            if found[ep.name].value != ep.value:
                logger.warning(
                    "two distributions provide backend %r (%s and %s); using the first",
                    ep.name,
                    _dist_of(found[ep.name])[0],
                    _dist_of(ep)[0],
                )
            continue
        found[ep.name] = ep
    return found


def _dist_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.name, dist.version
    except Exception:  # a broken METADATA file
        return None, None


def _hook_implementations(plugin: object) -> dict[str, tuple[Any, dict[str, Any]]]:
    """hook name -> (function, hookimpl options) for each ``@hookimpl`` attribute of ``plugin``."""
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    for attr in dir(plugin):
        if attr.startswith("__"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:
            continue
        opts = getattr(value, _IMPL_ATTR, None)
        if isinstance(opts, dict) and inspect.isroutine(value):
            found[opts.get("specname") or attr] = (value, opts)
    return found


def _check_shape(plugin: object) -> list[str]:
    """Problems with a backend plugin's hooks (unknown name, not ``async def``, defaults)."""
    problems: list[str] = []
    impls = _hook_implementations(plugin)
    if not impls:
        problems.append("it has no @inference_core.hookimpl hook")
    for name, (func, opts) in sorted(impls.items()):
        if name not in hookspecs.HOOK_NAMES:
            problems.append(
                f"{name!r} is not a hook (misspelled? known: {', '.join(hookspecs.HOOK_NAMES)})"
            )
            continue
        if opts.get("wrapper") or opts.get("hookwrapper"):
            continue
        if not inspect.iscoroutinefunction(func):
            kind = "an async generator" if inspect.isasyncgenfunction(func) else "not async"
            problems.append(f"hook {name!r} is {kind}: declare it `async def`")
    return problems


class _Instance:
    """The object registered for one backend instance: the plugin's hook functions, copied.

    Registering a proxy instead of the plugin itself lets one plugin serve two instances
    (``vllm_small`` and ``vllm_large`` from the same entry point).
    """

    def __init__(self, name: str, plugin: object) -> None:
        self._backend_name = name
        self._plugin = plugin
        for hook, (func, _opts) in _hook_implementations(plugin).items():
            setattr(self, hook, func)

    def __repr__(self) -> str:
        return f"<backend {self._backend_name!r}: {self._plugin!r}>"


def _trace_value(key: str, value: Any) -> str:
    if key == "config":
        from .settings import redact_backend

        try:
            return repr({"name": value.name, **redact_backend(value)})
        except Exception:
            return "<config>"
    if key == "http":
        return f"<{type(value).__name__}>"
    if key == "request":
        model = getattr(value, "model", None)
        stream = getattr(value, "stream", None)
        return f"{type(value).__name__}(model={model!r}, stream={stream!r})"
    return f"<{type(value).__name__}>"


def _install_tracing(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: list[Any], kwargs: Mapping[str, Any]) -> None:
        backends = [getattr(i, "plugin_name", "?") for i in impls]
        args = ", ".join(f"{k}={_trace_value(k, v)}" for k, v in kwargs.items())
        logger.info("hook %s -> %s (%s)", hook_name, ",".join(backends), args)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: Mapping[str, Any]) -> None:
        exc = outcome.exception
        if exc is not None:
            logger.info("hook %s raised %s", hook_name, type(exc).__name__)
        else:
            logger.info("hook %s returned %s", hook_name, type(outcome.get_result()).__name__)

    pm.add_hookcall_monitoring(before, after)


def _describe(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def load_backends(
    names: list[str],
    *,
    allow: list[str] | None = None,
    trace: bool = False,
    extra_plugins: Mapping[str, object] | None = None,
    plugin_names: Mapping[str, str] | None = None,
    core_plugins: Iterable[object] = (),
) -> PluginSet:
    """Load the backends ``names`` (chain order) and build their one-backend hook callers.

    ``extra_plugins``: name -> plugin object registered without an entry point (tests,
    embedding apps; the allow-list does not apply to them).  ``plugin_names``: backend instance
    name -> entry-point name, when they differ (``INFERENCE_<NAME>_PLUGIN``).  ``allow``:
    distribution names that may load (``INFERENCE_PLUGINS_ALLOW``).  ``trace``: log every hook
    call to the ``inference_core.plugins`` logger (``config`` redacted).  ``core_plugins``:
    ``wrapper=True`` plugins registered around every backend.
    """
    extra = dict(extra_plugins or {})
    plugin_names = dict(plugin_names or {})
    unique: list[str] = []
    for name in names:
        if name not in unique:
            unique.append(name)

    installed: dict[str, EntryPoint] = {}
    if any(name not in extra for name in unique):
        installed = installed_backends()
    unknown = [n for n in unique if n not in extra and plugin_names.get(n, n) not in installed]
    if unknown:
        listing = ", ".join(sorted(set(installed) | set(extra))) or "none"
        first = plugin_names.get(unknown[0], unknown[0])
        raise ConfigError(
            f"unknown backend {first!r} (named in INFERENCE_PROVIDER or FALLBACK_CHAIN"
            f"{'' if first == unknown[0] else f' as {unknown[0]!r}'}): no installed plugin "
            f"provides it; installed backends: {listing}; install one with "
            f"`pip install inference-{first.replace('_', '-')}` or fix the name",
            variable="FALLBACK_CHAIN" if len(unique) > 1 else "INFERENCE_PROVIDER",
        )

    allowed = None if allow is None else {normalize_distribution(d) for d in allow}
    pm = _new_manager()
    plugin_set = PluginSet(pm=pm)
    registered: dict[str, object] = {}

    for name in unique:
        report = LoadReport(name=name)
        plugin_set.reports.append(report)
        try:
            if name in extra:
                plugin = extra[name]
            else:
                ep = installed[plugin_names.get(name, name)]
                report.entry_point = ep.value
                report.distribution, report.version = _dist_of(ep)
                if allowed is not None and (
                    report.distribution is None
                    or normalize_distribution(report.distribution) not in allowed
                ):
                    report.error = (
                        f"distribution {report.distribution or '(unknown)'} is not in "
                        f"INFERENCE_PLUGINS_ALLOW ({', '.join(allow or []) or 'empty'})"
                    )
                    continue
                plugin = ep.load()
            problems = _check_shape(plugin)
            report.hooks = sorted(
                h for h in _hook_implementations(plugin) if h in hookspecs.HOOK_NAMES
            )
            if problems:
                report.error = "; ".join(problems)
                continue
            instance = _Instance(name, plugin)
            pm.register(instance, name=name)
            try:
                pm.check_pending()
            except Exception:
                pm.unregister(instance)
                raise
            registered[name] = instance
        except (Exception, SystemExit) as exc:  # one plugin's failure never stops the others
            report.error = _describe(exc)
        finally:
            if report.error:
                where = f" (distribution {report.distribution})" if report.distribution else ""
                report.error = f"backend {name!r}{where} did not load: {report.error}"
                logger.warning("%s", report.error)

    if not registered:
        summary = "; ".join(r.error or "" for r in plugin_set.reports)
        first = plugin_set.reports[0] if plugin_set.reports else None
        raise PluginLoadError(
            f"no backend of the chain could be loaded: {summary or 'the chain is empty'}",
            backend=first.name if first else None,
            distribution=first.distribution if first else None,
        )

    for plugin in core_plugins:
        plugin_set.add_core_plugin(plugin)

    for name, instance in registered.items():
        others = [p for n, p in registered.items() if n != name]
        callers = {
            hook: pm.subset_hook_caller(hook, remove_plugins=others)
            for hook in hookspecs.HOOK_NAMES
        }
        plugin_set.backends[name] = BackendHooks(
            name=name,
            plugin=instance._plugin,  # type: ignore[attr-defined]
            hook_names=frozenset(_hook_implementations(instance._plugin))
            & set(hookspecs.HOOK_NAMES),  # type: ignore[attr-defined]
            **callers,
        )
    if trace:
        _install_tracing(pm)
    return plugin_set


def inspect_installed(allow: list[str] | None = None) -> list[LoadReport]:
    """Try to load every installed backend (each in its own manager); one report each.

    For ``inference plugins``: name, distribution, version, hooks, and the load error if any.
    """
    reports: list[LoadReport] = []
    allowed = None if allow is None else {normalize_distribution(d) for d in allow}
    for name, ep in sorted(installed_backends().items()):
        dist, version = _dist_of(ep)
        report = LoadReport(name=name, distribution=dist, version=version, entry_point=ep.value)
        reports.append(report)
        if allowed is not None and (dist is None or normalize_distribution(dist) not in allowed):
            report.error = "not in INFERENCE_PLUGINS_ALLOW"
            continue
        try:
            plugin = ep.load()
            report.hooks = sorted(
                h for h in _hook_implementations(plugin) if h in hookspecs.HOOK_NAMES
            )
            problems = _check_shape(plugin)
            if problems:
                report.error = "; ".join(problems)
                continue
            pm = _new_manager()
            pm.register(_Instance(name, plugin), name=name)
            pm.check_pending()
        except (Exception, SystemExit) as exc:
            report.error = _describe(exc)
    return reports
