"""Redis state: the same contract as :class:`~.memory.MemoryState`, shared by every worker and
replica that points at one Redis (``INFERENCE_REDIS_URL``).

Every check-and-update is one Lua script (atomic in Redis: no read-modify-write race between
processes): :data:`_ADMIT` checks budget, rpm, tpm and parallel and takes a request and a slot
in one round trip; :data:`_SETTLE` frees the slot and adds the tokens to tpm, budget and the
day's usage, sent in the background (the client is not kept waiting) for every request that ended
in the last 20 ms at once (one call, not one per request).  Parallel
slots are a sorted set of tickets scored by their lease end, so the slots of a process that
died free themselves after ``INFERENCE_LIMITS_LEASE`` seconds.  Breaker and 429 flags are
hashes of ``key -> until`` in Redis server time (no clock skew between machines).

When Redis cannot be reached: ``fail="open"`` lets requests through without limits or
accounting (a warning per 10 s; Redis is not retried for 1 s after a failure, so a dead Redis
costs nothing per request), ``fail="closed"`` raises :class:`StateUnavailable` (the gateway
answers 503).  Keys, in ``prefix``: ``rpm:<key>:<minute>``, ``tpm:<key>:<minute>``,
``budget:<key>:<period id>``, ``par:<key>``, ``usage:<day>:<key>`` (hash), ``usage:keys`` (set),
``breakers``, ``ratelimits``, ``resp:<id>``, ``keys`` (the key store, see
:mod:`inference_core.gateway.keys`).  The ``redis`` package is imported only here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .base import (
    WINDOW,
    LimitExceeded,
    Limits,
    Period,
    PeriodClock,
    StateUnavailable,
    days_of,
    window_retry_after,
)
from .memory import summarize

__all__ = ["RedisState", "redis_client"]

log = logging.getLogger("inference_core.state")

_USAGE_TTL = 400 * 86400

_ADMIT = """
local now = tonumber(ARGV[1])
local elapsed = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
local tpm = tonumber(ARGV[4])
local par = tonumber(ARGV[5])
local budget = tonumber(ARGV[6])
local weight = 1 - elapsed / 60
if budget > 0 then
  local used = tonumber(redis.call('GET', KEYS[5]) or '0')
  if used >= budget then return {'budget', tostring(used)} end
end
if rpm > 0 then
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
  if prev * weight + cur + 1 > rpm then return {'rpm', tostring(prev), tostring(cur)} end
end
if tpm > 0 then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[4]) or '0')
  if prev * weight + cur + 1 > tpm then return {'tpm', tostring(prev), tostring(cur)} end
end
if par > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  if redis.call('ZCARD', KEYS[6]) >= par then return {'parallel'} end
  redis.call('ZADD', KEYS[6], now + tonumber(ARGV[8]), ARGV[7])
  redis.call('EXPIRE', KEYS[6], math.ceil(tonumber(ARGV[8])) + 1)
end
if rpm > 0 then
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 130)
end
return {'ok'}
"""

# the settles of many requests in one call: ARGV[1] = usage TTL, then 14 fields per request
_SETTLE = """
local usage_ttl = tonumber(ARGV[1])
local i = 2
while i <= #ARGV do
  local tokens = tonumber(ARGV[i + 5])
  if ARGV[i + 6] == '1' then redis.call('ZREM', ARGV[i + 2], ARGV[i + 4]) end
  if tokens > 0 and ARGV[i + 7] == '1' then
    redis.call('INCRBY', ARGV[i], tokens)
    redis.call('EXPIRE', ARGV[i], 130)
  end
  if tokens > 0 and ARGV[i + 8] == '1' then
    redis.call('INCRBY', ARGV[i + 1], tokens)
    redis.call('EXPIRE', ARGV[i + 1], tonumber(ARGV[i + 9]))
  end
  local usage = ARGV[i + 3]
  local field = ARGV[i + 10]
  redis.call('HINCRBY', usage, field .. '\\tp', ARGV[i + 11])
  redis.call('HINCRBY', usage, field .. '\\tc', ARGV[i + 12])
  redis.call('HINCRBY', usage, field .. '\\tn', 1)
  redis.call('EXPIRE', usage, usage_ttl)
  redis.call('SADD', ARGV[i + 13], ARGV[i + 14])
  i = i + 15
end
return 1
"""

# set a flag's end to max(current end, server time + ARGV[2] ms)
_FLAG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if untl > cur then redis.call('HSET', KEYS[1], ARGV[1], untl) end
return 1
"""

_POLL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""


def redis_client(url: str, timeout: float) -> Any:
    """A ``redis.asyncio`` client for ``url`` (imports the optional ``redis`` package)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:  # pragma: no cover - depends on the install
        from ..errors import ConfigError

        raise ConfigError(
            "INFERENCE_REDIS_URL is set but the 'redis' package is not installed "
            "(pip install 'inference-switchboard[redis]')",
            variable="INFERENCE_REDIS_URL",
        ) from None
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )


class RedisState:
    """The shared state backend (see :mod:`.base` for the contract)."""

    shared = True

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "inference:",
        fail: str = "open",
        lease: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from redis.exceptions import RedisError

        self.client = client
        self.prefix = prefix
        self.fail_closed = fail == "closed"
        self.lease = lease
        self._clock = clock
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._flag = client.register_script(_FLAG)
        self._poll = client.register_script(_POLL)
        self._periods = PeriodClock()
        self._pending: set[asyncio.Task[Any]] = set()
        self._batch: list[Any] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batch_delay = 0.02
        self.batch_max = 256
        self._down_until = 0.0
        self._warned = 0.0

    # ---------------------------------------------------------------------- failure mode

    def _down(self, exc: BaseException | None, what: str) -> None:
        now = time.monotonic()
        self._down_until = now + 1.0
        if now - self._warned >= 10.0:
            self._warned = now
            mode = "closed: answering 503" if self.fail_closed else "open: not enforcing"
            log.warning(
                "Redis is unreachable (%s during %s); INFERENCE_REDIS_FAIL=%s",
                type(exc).__name__ if exc else "recent failure", what, mode,
            )  # fmt: skip

    def available(self) -> bool:
        """False for a second after a Redis call failed (no call is tried meanwhile)."""
        return time.monotonic() >= self._down_until

    def _unavailable(self, exc: BaseException | None, what: str) -> None:
        """Record the failure; raise :class:`StateUnavailable` in ``closed`` mode."""
        if exc is not None:
            self._down(exc, what)
        if self.fail_closed:
            raise StateUnavailable("the shared state store (Redis) is unreachable") from None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # ---------------------------------------------------------------------------- limits

    async def admit(self, name: str, limits: Limits, ticket: str) -> None:
        if not limits.any:
            return
        if not self.available():
            self._unavailable(None, "admit")
            return
        now = self._clock()
        minute = int(now // WINDOW)
        elapsed = now - minute * WINDOW
        p = self.prefix
        budget_key = p + "budget:" + name
        left = 0.0
        if limits.budget:
            pid, left = self._periods.current(limits.period, now)
            budget_key = f"{p}budget:{name}:{pid}"
        keys = [
            f"{p}rpm:{name}:{minute}",
            f"{p}rpm:{name}:{minute - 1}",
            f"{p}tpm:{name}:{minute}",
            f"{p}tpm:{name}:{minute - 1}",
            budget_key,
            f"{p}par:{name}",
        ]
        args = [now, elapsed, limits.rpm, limits.tpm, limits.parallel, limits.budget, ticket,
                self.lease]  # fmt: skip
        try:
            result = await self._admit(keys=keys, args=args)
        except self._errors as exc:
            self._unavailable(exc, "admit")
            return
        verdict = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
        if verdict == "ok":
            return
        if verdict == "budget":
            raise LimitExceeded(
                "budget",
                left,
                f"token budget of {limits.budget} per {limits.period} is used up "
                f"({int(float(result[1]))} tokens)",
            )
        if verdict == "parallel":
            raise LimitExceeded("parallel", 1.0, f"{limits.parallel} requests at a time")
        prev, cur = float(result[1]), float(result[2])
        limit = limits.rpm if verdict == "rpm" else limits.tpm
        what = "requests" if verdict == "rpm" else "tokens"
        raise LimitExceeded(
            verdict,
            window_retry_after(prev, cur, elapsed, limit, 1),
            f"{limit} {what} per minute",
        )

    def settle(
        self,
        name: str,
        limits: Limits,
        ticket: str,
        model: str,
        backend: str,
        prompt: int,
        completion: int,
    ) -> None:
        """Queue the request's settle; the queue goes to Redis in one script call every
        ``batch_delay`` seconds (or at once past ``batch_max`` requests): per request, a list
        append instead of a round trip."""
        if not self.available():
            return
        now = self._clock()
        p = self.prefix
        day, _ = self._periods.current("day", now)
        budget_key = p + "budget:" + name
        ttl = 1
        if limits.budget:
            pid, left = self._periods.current(limits.period, now)
            budget_key = f"{p}budget:{name}:{pid}"
            ttl = int(left) + 3600
        self._batch.extend((
            f"{p}tpm:{name}:{int(now // WINDOW)}", budget_key, f"{p}par:{name}",
            f"{p}usage:{day}:{name}", ticket, prompt + completion,
            1 if limits.parallel else 0, 1 if limits.tpm else 0, 1 if limits.budget else 0, ttl,
            f"{model}\t{backend}", prompt, completion, f"{p}usage:keys", name,
        ))  # fmt: skip
        if len(self._batch) >= 15 * self.batch_max:
            self._send_batch()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.batch_delay, self._send_batch)

    def _send_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if batch:
            self._spawn(self._run_settle(batch))

    async def _run_settle(self, batch: list[Any]) -> None:
        try:
            await self._settle(keys=[], args=[_USAGE_TTL, *batch])
        except self._errors as exc:
            self._down(exc, "settle")

    async def flush(self) -> None:
        """Send the queued settles now and wait for every background write (tests, shutdown)."""
        self._send_batch()
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def usage(
        self, name: str | None, period: Period, at: float | None = None
    ) -> dict[str, Any]:
        ident, days = days_of(period, at)
        p = self.prefix
        try:
            if name is None:
                names = sorted(
                    n.decode() if isinstance(n, bytes) else n
                    for n in await self.client.smembers(p + "usage:keys")
                )
            else:
                names = [name]
            pipe = self.client.pipeline(transaction=False)
            order = []
            for key in names:
                for day in days:
                    pipe.hgetall(f"{p}usage:{day}:{key}")
                    order.append(key)
            results = await pipe.execute()
        except self._errors as exc:
            self._down(exc, "usage")
            raise StateUnavailable("the shared state store (Redis) is unreachable") from None
        rows: dict[str, dict[tuple[str, str], list[int]]] = {}
        for key, data in zip(order, results, strict=True):
            for field, value in data.items():
                text = field.decode() if isinstance(field, bytes) else field
                model, backend, kind = text.rsplit("\t", 2)
                acc = rows.setdefault(key, {}).setdefault((model, backend), [0, 0, 0])
                acc["pcn".index(kind)] += int(value)
        return summarize(ident, rows)

    async def budget_used(self, name: str, limits: Limits) -> int:
        pid, _ = self._periods.current(limits.period, self._clock())
        value = await self.client.get(f"{self.prefix}budget:{name}:{pid}")
        return int(value or 0)

    # ---------------------------------------------------------------- shared resilience

    def breaker_opened(self, key: str, seconds: float) -> None:
        """Tell the other processes that ``key``'s breaker opened for ``seconds``."""
        self._publish("breakers", key, seconds)

    def rate_limited(self, key: str, seconds: float) -> None:
        """Tell the other processes that ``key`` answered 429 for ``seconds``."""
        self._publish("ratelimits", key, seconds)

    def _publish(self, table: str, key: str, seconds: float) -> None:
        if seconds <= 0 or not self.available():
            return

        async def run() -> None:
            try:
                await self._flag(keys=[self.prefix + table], args=[key, int(seconds * 1000)])
            except self._errors as exc:
                self._down(exc, "publish")

        self._spawn(run())

    async def poll_flags(self) -> tuple[dict[str, float], dict[str, float]]:
        """``({breaker key: seconds left}, {429 key: seconds left})`` of the flags still on."""
        if not self.available():
            return {}, {}
        try:
            now, breakers, limits = await self._poll(
                keys=[self.prefix + "breakers", self.prefix + "ratelimits"]
            )
        except self._errors as exc:
            self._down(exc, "poll")
            return {}, {}
        return _flags(int(now), breakers), _flags(int(now), limits)

    # ------------------------------------------------------------------ Responses store

    # Redis down: ``open`` reads nothing and drops writes (logged), ``closed`` raises
    # StateUnavailable (the gateway answers 503).

    async def put_response(self, response_id: str, data: bytes, ttl: float) -> None:
        try:
            await self.client.set(self.prefix + "resp:" + response_id, data, px=int(ttl * 1000))
        except self._errors as exc:
            self._unavailable(exc, "put_response")

    async def get_response(self, response_id: str) -> bytes | None:
        try:
            value = await self.client.get(self.prefix + "resp:" + response_id)
        except self._errors as exc:
            self._unavailable(exc, "get_response")
            return None
        return bytes(value) if value is not None else None

    async def delete_response(self, response_id: str) -> bool:
        try:
            return bool(await self.client.delete(self.prefix + "resp:" + response_id))
        except self._errors as exc:
            self._unavailable(exc, "delete_response")
            return False

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except self._errors:
            return False

    async def aclose(self) -> None:
        await self.flush()
        await self.client.aclose()


def _flags(now_ms: int, flat: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i in range(0, len(flat) - 1, 2):
        until = int(flat[i + 1])
        if until > now_ms:
            key = flat[i].decode() if isinstance(flat[i], bytes) else str(flat[i])
            out[key] = (until - now_ms) / 1000.0
    return out
