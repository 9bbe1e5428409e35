"""The pieces the conformance kit runs a plugin with, usable in a plugin's own unit tests too.

* :func:`make_config`: a :class:`~inference_core.models.BackendConfig` for tests;
* :func:`hook_implementations`: a plugin's ``@hookimpl`` methods, by hook name;
* :class:`HookHarness`: one plugin registered on its own plugin manager, hooks ``await``-ed as
  core calls them;
* :func:`drain`: every item of a streamed answer; :func:`capture_logs`: every log record of
  every logger, at every level, for the duration of a block.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pluggy

from .. import hookspecs
from ..models import BackendConfig

__all__ = ["HookHarness", "capture_logs", "drain", "hook_implementations", "make_config"]

_SPEC_ARGS = {
    name: tuple(inspect.signature(getattr(hookspecs, name)).parameters)
    for name in hookspecs.HOOK_NAMES
}


#: failure -> the error classes a hook may raise for it (flags must match the class's)
def make_config(
    name: str = "test",
    *,
    base_url: str | tuple[str, ...] | None = "http://upstream.test",
    model: str | None = "upstream-model",
    api_key: str | None = None,
    timeout: float = 5.0,
    connect_timeout: float = 1.0,
    aliases: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> BackendConfig:
    """A :class:`BackendConfig` for tests (``api_key`` and ``*key/token/secret`` options secret)."""
    from pydantic import SecretStr

    urls: tuple[str, ...]
    if base_url is None:
        urls = ()
    elif isinstance(base_url, str):
        urls = (base_url,)
    else:
        urls = tuple(base_url)
    opts: dict[str, Any] = {}
    for key, value in (options or {}).items():
        key = key.lower()
        secret = key.endswith(("key", "token", "secret")) and not isinstance(value, SecretStr)
        opts[key] = SecretStr(str(value)) if secret else value
    return BackendConfig(
        name=name,
        base_urls=urls,
        model=model,
        api_key=SecretStr(api_key) if api_key else None,
        timeout=timeout,
        connect_timeout=connect_timeout,
        aliases=dict(aliases or {}),
        options=opts,
    )


def hook_implementations(plugin: object) -> dict[str, Callable[..., Any]]:
    """Every attribute of ``plugin`` marked with ``@inference_core.hookimpl``, by hook name."""
    marker = f"{hookspecs.PROJECT_NAME}_impl"
    found: dict[str, Callable[..., Any]] = {}
    for attr in dir(plugin):
        try:
            value = getattr(plugin, attr)
        except Exception:  # a property that raises is not a hook
            continue
        opts = getattr(value, marker, None)
        if isinstance(opts, dict):
            found[opts.get("specname") or attr] = value
    return found


class HookHarness:
    """A plugin manager holding one plugin, with an ``await``-able ``call``."""

    def __init__(self, plugin: object, name: str) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(plugin, name=name)
        self.name = name

    def implements(self, hook: str) -> bool:
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    async def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` with the spec's arguments; ``None`` when the plugin lacks it."""
        result = getattr(self.pm.hook, hook)(**{k: kwargs.get(k) for k in _SPEC_ARGS[hook]})
        if result is None:
            return None
        assert inspect.isawaitable(result), (
            f"hook {hook!r} of {self.name!r} returned {type(result).__name__}, not a coroutine: "
            "declare it with `async def`"
        )
        return await result


async def drain(result: Any) -> list[Any]:
    assert hasattr(result, "__anext__"), (
        f"a streaming call must return an async iterator, got {type(result).__name__}"
    )
    return [item async for item in result]


class LogRecords(logging.Handler):
    """Every log record of every logger, formatted (message, arguments and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(self.format(record))
        except Exception:  # a record whose arguments do not format: keep what we can
            self.texts.append(f"{record.name} {record.msg!r} {record.args!r}")


@contextmanager
def capture_logs() -> Iterator[LogRecords]:
    """Route every logger to one handler at DEBUG (all levels), for the block's duration."""
    root = logging.getLogger()
    handler = LogRecords()
    level = root.level
    quiet = {
        name: lg.level
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and lg.level > logging.DEBUG
    }
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    previous = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    try:
        yield handler
    finally:
        logging.disable(previous)
        for name, lvl in quiet.items():
            logging.getLogger(name).setLevel(lvl)
        root.setLevel(level)
        root.removeHandler(handler)
