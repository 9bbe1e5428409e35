"""API keys with limits: the records, their stores and the gateway's look-up.

A :class:`KeyRecord` holds a key's name, the SHA-256 of its secret (the secret itself is shown
once, by ``inference keys create``, and stored nowhere), the models it may use (``fnmatch``
globs; empty = all), its limits (rpm, tpm, parallel, a token budget per day/week/month), an
optional expiry and free-form metadata.

Stores: :class:`FileKeyStore` (the TOML file ``INFERENCE_KEYS_FILE``, rewritten atomically with
mode 0600) and :class:`RedisKeyStore` (hash ``<prefix>keys``: name -> JSON record, and
``<prefix>keyhash``: hash -> name), picked by :func:`open_store`.

:class:`KeyRing` is what the gateway asks per request: ``ring.lookup(token)`` is one SHA-256 and
one dict look-up.  The ring reloads its store every ``INFERENCE_KEYS_REFRESH`` seconds (a revoked
key stops working within that time) and looks an unknown token up in the store at once (so a
key just created works on its first request; at most one such look-up per second).  The keys of
``INFERENCE_GATEWAY_API_KEYS`` keep working: they are records named ``env-1``, ``env-2``, ...
without limits.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..state.base import PERIODS, Limits

__all__ = [
    "FileKeyStore",
    "KeyRecord",
    "KeyRing",
    "KeyStoreError",
    "RedisKeyStore",
    "hash_secret",
    "make_record",
    "new_secret",
    "open_store",
    "parse_expiry",
]

log = logging.getLogger("inference_core.gateway")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SECRET_PREFIX = "sk-inf-"


class KeyStoreError(ValueError):
    """A key operation failed (bad name, duplicate, unknown): the message says why."""


def new_secret() -> str:
    """A fresh secret: ``sk-inf-`` and 256 random bits (url-safe base64)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str | bytes) -> str:
    """The stored form of a secret: its SHA-256, hex.  (The secrets are 256 random bits, so a
    fast hash is as safe as a slow one here, and keeps the per-request look-up cheap.)"""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()


def parse_expiry(text: str) -> float:
    """``YYYY-MM-DD`` (the end of that UTC day) or an ISO 8601 date-time -> epoch seconds."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise KeyStoreError(
            f"invalid expiry {text!r}: use YYYY-MM-DD or an ISO 8601 date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KeyRecord:
    """One API key (never its secret).  0 = no limit; ``models`` empty = every model."""

    name: str
    hash: str
    models: tuple[str, ...] = ()
    rpm: int = 0
    tpm: int = 0
    parallel: int = 0
    budget: int = 0
    period: str = "month"
    expires: float | None = None
    created: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(init=False, repr=False, compare=False)
    _allowed: dict[str, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise KeyStoreError(
                f"invalid key name {self.name!r}: 1-64 of letters, digits, '.', '_', '-' "
                "(starting with a letter or digit)"
            )
        if self.period not in PERIODS:
            raise KeyStoreError(f"invalid period {self.period!r}: use day, week or month")
        for label, value in (("rpm", self.rpm), ("tpm", self.tpm), ("parallel", self.parallel),
                             ("budget", self.budget)):  # fmt: skip
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise KeyStoreError(f"invalid {label} {value!r}: a whole number >= 0")
        self.models = tuple(self.models)
        self.limits = Limits(self.rpm, self.tpm, self.parallel, self.budget, self.period)  # type: ignore[arg-type]
        self._allowed = {}

    def allows(self, model: str | None) -> bool:
        """True when this key may use ``model`` (cached per model name)."""
        if not self.models:
            return True
        model = model or ""
        hit = self._allowed.get(model)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(model, glob) for glob in self.models)
            if len(self._allowed) < 4096:
                self._allowed[model] = hit
        return hit

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("limits", None)
        data.pop("_allowed", None)
        data["models"] = list(self.models)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRecord:
        known = {"name", "hash", "models", "rpm", "tpm", "parallel", "budget", "period",
                 "expires", "created", "metadata"}  # fmt: skip
        values = {k: v for k, v in data.items() if k in known}
        for stamp in ("expires", "created"):
            value = values.get(stamp)
            if isinstance(value, datetime):
                values[stamp] = value.timestamp()
            elif isinstance(value, date):
                values[stamp] = parse_expiry(value.isoformat())
            elif isinstance(value, str):
                values[stamp] = parse_expiry(value)
        values["models"] = tuple(values.get("models") or ())
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """What ``keys list`` and the admin endpoint show (no hash either)."""
        return {
            "name": self.name,
            "models": list(self.models) or ["*"],
            "rpm": self.rpm or None,
            "tpm": self.tpm or None,
            "parallel": self.parallel or None,
            "budget": self.budget or None,
            "period": self.period if self.budget else None,
            "expires": _iso(self.expires),
            "created": _iso(self.created),
            "metadata": self.metadata,
        }


# --------------------------------------------------------------------------------- stores


class FileKeyStore:
    """The TOML key store (``INFERENCE_KEYS_FILE``): one ``[keys.<name>]`` table per key."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def stamp(self) -> float | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns + st.st_size

    def _read(self) -> dict[str, KeyRecord]:
        import tomllib

        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"INFERENCE_KEYS_FILE={str(self.path)!r}: not valid TOML ({exc})",
                variable="INFERENCE_KEYS_FILE",
            ) from None
        out: dict[str, KeyRecord] = {}
        for name, table in (data.get("keys") or {}).items():
            try:
                out[name] = KeyRecord.from_dict({**table, "name": name})
            except (KeyStoreError, TypeError) as exc:
                raise ConfigError(
                    f"INFERENCE_KEYS_FILE={str(self.path)!r}: key {name!r}: {exc}",
                    variable="INFERENCE_KEYS_FILE",
                ) from None
        return out

    def _write(self, records: dict[str, KeyRecord]) -> None:
        lines = [
            "# inference-core key store (`inference keys create|list|revoke`).",
            "# Secrets are not stored: `hash` is the SHA-256 of each key's secret.",
            "",
        ]
        for name in sorted(records):
            lines.extend(_toml_table(records[name]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
        os.replace(tmp, self.path)

    async def load(self) -> dict[str, KeyRecord]:
        return self._read()

    async def find(self, digest: str) -> KeyRecord | None:
        return next((r for r in self._read().values() if r.hash == digest), None)

    async def create(self, record: KeyRecord) -> None:
        records = self._read()
        if record.name in records:
            raise KeyStoreError(f"a key named {record.name!r} exists already (revoke it first)")
        records[record.name] = record
        self._write(records)

    async def revoke(self, name: str) -> bool:
        records = self._read()
        if records.pop(name, None) is None:
            return False
        self._write(records)
        return True

    async def aclose(self) -> None:
        return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"  # fmt: skip
    return json.dumps(str(value), ensure_ascii=False)


def _toml_table(record: KeyRecord) -> list[str]:
    lines = [f"[keys.{json.dumps(record.name)}]", f"hash = {_toml_value(record.hash)}"]
    if record.models:
        lines.append(f"models = {_toml_value(list(record.models))}")
    for attr in ("rpm", "tpm", "parallel", "budget"):
        value = getattr(record, attr)
        if value:
            lines.append(f"{attr} = {value}")
    if record.budget:
        lines.append(f"period = {_toml_value(record.period)}")
    if record.expires is not None:
        lines.append(f"expires = {_iso(record.expires)}")
    lines.append(f"created = {_iso(record.created)}")
    if record.metadata:
        lines.append(f"metadata = {_toml_value(record.metadata)}")
    lines.append("")
    return lines


class RedisKeyStore:
    """The key store in Redis (``INFERENCE_REDIS_URL``): shared by every replica."""

    def __init__(self, client: Any, prefix: str = "inference:") -> None:
        self.client = client
        self.records = prefix + "keys"
        self.hashes = prefix + "keyhash"

    @staticmethod
    def _decode(raw: Any) -> KeyRecord:
        return KeyRecord.from_dict(json.loads(raw))

    async def load(self) -> dict[str, KeyRecord]:
        data = await self.client.hgetall(self.records)
        out = {}
        for _name, raw in data.items():
            record = self._decode(raw)
            out[record.name] = record
        return out

    async def find(self, digest: str) -> KeyRecord | None:
        name = await self.client.hget(self.hashes, digest)
        if name is None:
            return None
        raw = await self.client.hget(self.records, name)
        return self._decode(raw) if raw is not None else None

    async def create(self, record: KeyRecord) -> None:
        payload = json.dumps(record.to_dict())
        if not await self.client.hsetnx(self.records, record.name, payload):
            raise KeyStoreError(f"a key named {record.name!r} exists already (revoke it first)")
        await self.client.hset(self.hashes, record.hash, record.name)

    async def revoke(self, name: str) -> bool:
        raw = await self.client.hget(self.records, name)
        if raw is None:
            return False
        record = self._decode(raw)
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.records, name)
        pipe.hdel(self.hashes, record.hash)
        await pipe.execute()
        return True

    async def aclose(self) -> None:
        return None


def open_store(settings: Any, client: Any = None) -> FileKeyStore | RedisKeyStore | None:
    """The key store ``settings`` (a :class:`~inference_core.state.StateSettings`) names:
    Redis when it has a URL (or ``client`` is given), else the TOML file, else None."""
    if client is not None or settings.redis_url:
        if client is None:
            from ..state.redis import redis_client

            client = redis_client(settings.redis_url, settings.redis_timeout)
        return RedisKeyStore(client, settings.redis_prefix)
    if settings.keys_file:
        return FileKeyStore(settings.keys_file)
    return None


# ----------------------------------------------------------------------------- the ring


class KeyRing:
    """The gateway's view of every key: legacy ``INFERENCE_GATEWAY_API_KEYS`` plus a store."""

    def __init__(
        self,
        legacy: Iterable[str] = (),
        store: FileKeyStore | RedisKeyStore | None = None,
        refresh: float = 5.0,
    ) -> None:
        self.store = store
        self.refresh = refresh
        self._legacy: dict[str, KeyRecord] = {}
        for i, secret in enumerate((s for s in legacy if s), start=1):
            record = KeyRecord(name=f"env-{i}", hash=hash_secret(secret))
            self._legacy[record.hash] = record
        self.by_hash: dict[str, KeyRecord] = dict(self._legacy)
        self.enabled = bool(self._legacy) or store is not None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_miss = 0.0
        self._stamp: float | None = None

    def lookup(self, token: bytes) -> KeyRecord | None:
        """The record whose secret is ``token`` (None when unknown)."""
        return self.by_hash.get(hashlib.sha256(token).hexdigest())

    async def lookup_miss(self, token: bytes) -> KeyRecord | None:
        """Ask the store for a token the ring does not know (a key created since the last
        reload); at most once per second, so unknown tokens cannot hammer the store."""
        if self.store is None:
            return None
        now = time.monotonic()
        if now - self._last_miss < 1.0:
            return None
        self._last_miss = now
        try:
            record = await self.store.find(hash_secret(token))
        except Exception:
            log.warning("looking a key up in the key store failed", exc_info=True)
            return None
        if record is not None:
            self.by_hash[record.hash] = record
        return record

    async def reload(self) -> None:
        """Read every record from the store (legacy keys stay)."""
        if self.store is None:
            return
        if isinstance(self.store, FileKeyStore):
            stamp = self.store.stamp()
            if stamp == self._stamp and self._stamp is not None:
                return
            self._stamp = stamp
        records = await self.store.load()
        fresh = dict(self._legacy)
        for record in records.values():
            fresh[record.hash] = record
        self.by_hash = fresh

    def names(self) -> list[str]:
        return sorted({r.name for r in self.by_hash.values()})

    def start(self) -> None:
        if self.store is not None and self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._closed:  # the flag, in case redis-py swallowed a cancellation
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reloading the key store failed; keeping the last keys", exc_info=True)

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)


def make_record(
    name: str,
    secret: str,
    *,
    models: Iterable[str] = (),
    rpm: int = 0,
    tpm: int = 0,
    parallel: int = 0,
    budget: int = 0,
    period: str = "month",
    expires: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> KeyRecord:
    """A new record for ``secret`` (validated; raises :class:`KeyStoreError`)."""
    return KeyRecord(
        name=name,
        hash=hash_secret(secret),
        models=tuple(m.strip() for m in models if m.strip()),
        rpm=rpm,
        tpm=tpm,
        parallel=parallel,
        budget=budget,
        period=period,
        expires=parse_expiry(expires) if expires else None,
        metadata=dict(metadata or {}),
    )
