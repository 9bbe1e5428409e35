"""Gateway API keys, request-id hygiene and secret redaction.

* :class:`KeyChecker`: ``Authorization: Bearer <key>`` against ``INFERENCE_GATEWAY_API_KEYS``,
  compared with :func:`hmac.compare_digest` against *every* configured key (no early exit, so
  the time taken does not say which key came close).
* :func:`clean_request_id`: a client's ``x-request-id`` is echoed only when it is short and
  made of safe characters; otherwise a fresh one is generated.
* :class:`Redactor`: removes every configured secret (backend API keys, gateway keys) from text
  that leaves the process on an error path (error messages, health output, log lines).  Built
  with ``addresses``, it also hides backend addresses (URLs, ``host:port`` of the configured
  backends, IP addresses): the gateway uses that one for what *clients* see (error bodies, the
  503's ``attempts``, ``/v1/health/inference``), and the secrets-only one for its logs, which
  keep the addresses (:func:`collect_addresses`, :func:`public_health`).
"""

from __future__ import annotations

import hmac
import itertools
import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "HIDDEN_ADDRESS",
    "KeyChecker",
    "Redactor",
    "clean_request_id",
    "collect_addresses",
    "collect_secrets",
    "new_request_id",
    "public_health",
]

HIDDEN_ADDRESS = "<backend address>"
_ADDRESS_PATTERNS = (
    r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>)]+",  # any URL
    r"\[[0-9a-fA-F:.]+\](?::\d{1,5})?",  # [v6]:port
    r"\('[^']*',\s*\d{1,5}(?:,\s*\d+,\s*\d+)?\)",  # Python's ('host', port) in OS errors
    r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b",  # v4[:port]
)

_SAFE_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)


def new_request_id() -> str:
    """A cheap unique id: a per-process random prefix and a counter (no syscall per request)."""
    return f"{_PREFIX}{next(_counter):010x}"


def clean_request_id(raw: bytes | None) -> str | None:
    """The client's request id when it is safe to echo (<= 128 chars of ``[A-Za-z0-9._:/+=@-]``)."""
    if raw and _SAFE_ID.fullmatch(raw):
        return raw.decode("ascii")
    return None


class KeyChecker:
    """Bearer-key check over all configured keys."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode() for k in keys if k)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: bytes | None) -> bool:
        """True when ``authorization`` is ``Bearer <a configured key>`` (or no keys are set)."""
        if not self._keys:
            return True
        if not authorization or len(authorization) < 8:
            return False
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        ok = False
        for key in self._keys:  # every key, no short-circuit
            ok |= hmac.compare_digest(token, key)
        return ok


def _secret_values(obj: Any, out: set[str], depth: int = 0) -> None:
    """Collect the clear values of every ``SecretStr`` reachable from ``obj``."""
    from pydantic import BaseModel, SecretStr

    if depth > 6 or obj is None:
        return
    if isinstance(obj, SecretStr):
        value = obj.get_secret_value()
        if value:
            out.add(value)
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            _secret_values(getattr(obj, name, None), out, depth + 1)
    elif isinstance(obj, dict):
        for value in obj.values():
            _secret_values(value, out, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            _secret_values(value, out, depth + 1)


def collect_secrets(router: Any, extra: Iterable[Any] = ()) -> set[str]:
    """Every secret the router's settings hold (backend keys, ...) plus ``extra`` SecretStrs."""
    out: set[str] = set()
    settings = getattr(router, "settings", None)
    if settings is not None:
        _secret_values(settings, out)
        chain = getattr(settings, "chain", None)
        backend = getattr(settings, "backend", None)
        if chain and callable(backend):
            for name in list(chain):
                try:
                    _secret_values(backend(name), out)
                except Exception:
                    continue
    plugins = getattr(router, "plugins", None)
    configs = getattr(router, "configs", None) or getattr(plugins, "configs", None)
    if isinstance(configs, dict):
        _secret_values(configs, out)
    _secret_values(list(extra), out)
    return {s for s in out if len(s) >= 4}


def collect_addresses(router: Any) -> set[str]:
    """``host:port`` of every configured backend URL (what a client must not learn)."""
    from urllib.parse import urlsplit

    out: set[str] = set()
    settings = getattr(router, "settings", None)
    chain = getattr(settings, "chain", None) or ()
    backend = getattr(settings, "backend", None)
    if not callable(backend):
        return out
    for name in list(chain):
        try:
            urls = backend(name).base_urls
        except Exception:
            continue
        for url in urls or ():
            try:
                parts = urlsplit(url)
                host, port = parts.hostname, parts.port
            except ValueError:
                continue
            if host:
                default = 443 if parts.scheme == "https" else 80
                out.add(f"{host}:{port or default}")
                if ":" in host:
                    out.add(f"[{host}]:{port or default}")
    return out


def public_health(backends: Any) -> Any:
    """The health payload without replica URLs: each replica is named ``<backend>#<n>``."""
    if not isinstance(backends, dict):
        return backends
    out: dict[str, Any] = {}
    for name, info in backends.items():
        if isinstance(info, dict) and isinstance(info.get("replicas"), list):
            replicas = []
            for i, replica in enumerate(info["replicas"]):
                if isinstance(replica, dict) and "url" in replica:
                    replica = {**replica, "url": None, "replica": f"{name}#{i}"}
                replicas.append(replica)
            info = {**info, "replicas": replicas}
        out[name] = info
    return out


class Redactor:
    """Replace known secrets (and their 8+ character prefixes) with ``****``; with
    ``addresses`` (possibly empty), also URLs, IP addresses and those ``host:port`` strings
    with ``<backend address>``."""

    __slots__ = ("_addresses", "_pattern")

    def __init__(self, secrets: Iterable[str], addresses: Iterable[str] | None = None) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        parts: list[str] = []
        for value in values:
            parts.append(re.escape(value))
            if len(value) > 12:  # backends echo key prefixes ("sk-secret-...123")
                parts.append(re.escape(value[:8]) + r"[^\s\"',;]*")
        self._pattern = re.compile("|".join(parts)) if parts else None
        self._addresses = None
        if addresses is not None:
            known = sorted({a for a in addresses if a}, key=len, reverse=True)
            alts = [*_ADDRESS_PATTERNS, *(rf"(?<![\w.-]){re.escape(a)}(?!\d)" for a in known)]
            self._addresses = re.compile("|".join(alts))

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub("****", text)
        if self._addresses is not None:
            text = self._addresses.sub(HIDDEN_ADDRESS, text)
        return text

    def deep(self, obj: Any) -> Any:
        """``obj`` (JSON-like) with every string redacted."""
        if self._pattern is None and self._addresses is None:
            return obj
        if isinstance(obj, str):
            return self(obj)
        if isinstance(obj, dict):
            return {k: self.deep(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.deep(v) for v in obj]
        return obj
