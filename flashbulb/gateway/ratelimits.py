"""Rate limits on live calls: requests per minute and requests in flight, per key and per account.

Checked by the gateway before any credit is held, so a refused call is never charged
(`ErrorKind.RATE_LIMITED`, 429 with Retry-After in the caller's wire format). A call that gets
through holds a `Lease` on a concurrency slot of its key and of its account until the gateway
releases it, exactly once, however the call ends.

Two backends with the same behaviour:
- in-process (default): counts are this process's own;
- Redis (`[rate_limits] redis_url`): every server using that Redis shares them. Requests per minute
  are a moving window kept by the `limits` package; slots in flight are members of a sorted set per
  key and per account, scored with an expiry that the holding server renews while the call runs,
  so the slots of a server that crashed free themselves within `SLOT_TTL_S`.

Batch items (ImageRequest.priority 1) are not rate-limited: the batch runner already meters them
(`[batch] max_in_flight`), and they must never eat a customer's live allowance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
import uuid

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from flashbulb.config import RateLimits
from flashbulb.engine.types import Caller
from flashbulb.errors import ErrorKind, FlashbulbError

log = logging.getLogger("flashbulb.ratelimits")

SLOT_TTL_S = 30.0  # a Redis slot not renewed for this long is free (its server is gone)
RENEW_EVERY_S = SLOT_TTL_S / 3


@dataclasses.dataclass
class Lease:
    """Slots in flight held by one call: released once (`released` guards a second release)."""

    token: str
    slots: list[str]  # the scopes whose slot this holds ("key:12", "account:3")
    expires_at: float  # monotonic: past this a leaked lease (a call that never ran) frees itself
    released: bool = False


def _rate_limited(message: str, retry_after_s: float) -> FlashbulbError:
    return FlashbulbError(ErrorKind.RATE_LIMITED, message, retry_after_s=max(1, math.ceil(retry_after_s)))


class RateLimiter:
    """`acquire` before the hold, `release` when the call is over."""

    def __init__(self, config: RateLimits, *, max_lease_s: float):
        self.config = config
        self.max_lease_s = max_lease_s  # the longest a call can hold a slot (the hold's own TTL)
        if config.redis_url:
            self.backend: _Backend = _RedisBackend(config.redis_url, config.redis_prefix)
        else:
            self.backend = _MemoryBackend()

    @property
    def shared(self) -> bool:
        return isinstance(self.backend, _RedisBackend)

    async def acquire(self, caller: Caller) -> Lease | None:
        """Take a slot for the key and the account and count one request against both per-minute
        limits, or raise RATE_LIMITED having taken nothing. None when no limit applies."""
        limits = self.config.for_account(caller.account_name)
        concurrent = [
            (f"key:{caller.key_id}", limits["key_concurrent"], "this API key"),
            (f"account:{caller.account_id}", limits["account_concurrent"], "this account"),
        ]
        per_minute = [
            (f"key:{caller.key_id}", limits["key_rpm"], "this API key"),
            (f"account:{caller.account_id}", limits["account_rpm"], "this account"),
        ]
        concurrent = [c for c in concurrent if c[1] > 0]
        per_minute = [r for r in per_minute if r[1] > 0]
        if not concurrent and not per_minute:
            return None
        lease = Lease(uuid.uuid4().hex, [scope for scope, _, _ in concurrent], time.monotonic() + self.max_lease_s)
        if self.shared:
            return await asyncio.to_thread(self._acquire, lease, concurrent, per_minute)
        return self._acquire(lease, concurrent, per_minute)

    def _acquire(self, lease: Lease, concurrent: list, per_minute: list) -> Lease:
        try:
            if concurrent:
                full = self.backend.take_slots(lease, [(scope, n) for scope, n, _ in concurrent], self.max_lease_s)
                if full is not None:
                    _, n, who = concurrent[full]
                    raise _rate_limited(
                        f"Too many requests in flight for {who}: the limit is {n} at a time. Retry when one finishes.", 1
                    )
            try:
                self._count(per_minute)
            except BaseException:
                self.backend.give_back(lease)
                raise
        except FlashbulbError:
            raise
        except Exception:  # the limit store is down: serve rather than refuse everyone
            log.warning("rate limit store unreachable; letting the request through", exc_info=True)
            return Lease(lease.token, [], lease.expires_at, released=True)
        self.backend.started(lease)
        return lease

    def _count(self, per_minute: list) -> None:
        limiter = self.backend.window
        prefix = self.backend.prefix
        items = [(RateLimitItemPerMinute(n), scope, n, who) for scope, n, who in per_minute]
        for item, scope, n, who in items:
            if not limiter.test(item, prefix, scope):
                raise self._over(item, scope, n, who)
        for item, scope, n, who in items:
            # test-then-hit: two servers racing may each let one more through; never fewer.
            if not limiter.hit(item, prefix, scope):
                raise self._over(item, scope, n, who)

    def _over(self, item: RateLimitItemPerMinute, scope: str, n: int, who: str) -> FlashbulbError:
        stats = self.backend.window.get_window_stats(item, self.backend.prefix, scope)
        return _rate_limited(f"Rate limit exceeded for {who}: {n} requests per minute.", stats.reset_time - time.time())

    async def release(self, lease: Lease | None) -> None:
        """Give the lease's slots back; a second call for the same lease does nothing."""
        if lease is None or lease.released:
            return
        lease.released = True
        if self.shared:
            await asyncio.shield(asyncio.to_thread(self._give_back, lease))
        else:
            self._give_back(lease)

    def _give_back(self, lease: Lease) -> None:
        try:
            self.backend.give_back(lease)
        except Exception:  # the slot expires on its own in SLOT_TTL_S
            log.warning("could not release rate limit slots of %s", lease.token, exc_info=True)

    def in_flight(self, scope: str) -> int:
        """How many slots of one scope ("key:12", "account:3") are taken (for tests and metrics)."""
        return self.backend.count(scope)


class _Backend:
    prefix: str
    window: MovingWindowRateLimiter

    def take_slots(self, lease: Lease, scopes: list[tuple[str, int]], max_lease_s: float) -> int | None:
        """Take a slot in every scope, or none: returns the index of a full scope, else None."""
        raise NotImplementedError

    def started(self, lease: Lease) -> None:
        pass

    def give_back(self, lease: Lease) -> None:
        raise NotImplementedError

    def count(self, scope: str) -> int:
        raise NotImplementedError


class _MemoryBackend(_Backend):
    def __init__(self) -> None:
        self.prefix = "flashbulb"
        self.window = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._slots: dict[str, dict[str, float]] = {}  # scope -> {lease token: expiry (monotonic)}

    def _live(self, scope: str, now: float) -> dict[str, float]:
        slots = self._slots.setdefault(scope, {})
        for token in [t for t, expiry in slots.items() if expiry < now]:
            del slots[token]  # a lease whose call never ran (a stream never started)
        return slots

    def take_slots(self, lease: Lease, scopes: list[tuple[str, int]], max_lease_s: float) -> int | None:
        now = time.monotonic()
        with self._lock:
            for i, (scope, limit) in enumerate(scopes):
                if len(self._live(scope, now)) >= limit:
                    return i
            for scope, _ in scopes:
                self._slots[scope][lease.token] = lease.expires_at
        return None

    def give_back(self, lease: Lease) -> None:
        with self._lock:
            for scope in lease.slots:
                self._slots.get(scope, {}).pop(lease.token, None)
                if not self._slots.get(scope):
                    self._slots.pop(scope, None)

    def count(self, scope: str) -> int:
        with self._lock:
            return len(self._live(scope, time.monotonic()))


# KEYS: one sorted set per scope; ARGV: token, slot TTL (ms), then each scope's limit.
# Drops expired members, and adds the token to every set only if none is full (Redis' clock for all).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[i + 2]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, 2 * tonumber(ARGV[2]))
end
return 0
"""

# KEYS: the lease's sets; ARGV: token, slot TTL (ms). Pushes the token's expiry out (if still held).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', key, 2 * tonumber(ARGV[2]))
end
return 0
"""


class _RedisBackend(_Backend):
    def __init__(self, url: str, prefix: str):
        import redis

        self.prefix = prefix
        storage = RedisStorage(url, key_prefix=f"{prefix}:rpm", socket_timeout=2, socket_connect_timeout=2)
        self.window = MovingWindowRateLimiter(storage)
        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._take = self.redis.register_script(_TAKE)
        self._renew = self.redis.register_script(_RENEW)
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def _key(self, scope: str) -> str:
        return f"{self.prefix}:inflight:{scope}"

    def take_slots(self, lease: Lease, scopes: list[tuple[str, int]], max_lease_s: float) -> int | None:
        full = self._take(
            keys=[self._key(s) for s, _ in scopes], args=[lease.token, int(SLOT_TTL_S * 1000), *(n for _, n in scopes)]
        )
        return int(full) - 1 if int(full) else None

    def started(self, lease: Lease) -> None:
        if not lease.slots:
            return
        with self._lock:
            self._leases[lease.token] = lease
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_forever, name="flashbulb-slot-renewer", daemon=True)
                self._renewer.start()

    def _renew_forever(self) -> None:
        while True:
            time.sleep(RENEW_EVERY_S)
            now = time.monotonic()
            with self._lock:
                leases = list(self._leases.values())
                for lease in leases:
                    if lease.expires_at < now:  # a call that never ran: let its slots expire
                        self._leases.pop(lease.token, None)
            for lease in leases:
                if lease.released or lease.expires_at < now:
                    continue
                try:
                    self._renew(keys=[self._key(s) for s in lease.slots], args=[lease.token, int(SLOT_TTL_S * 1000)])
                except Exception:
                    log.warning("could not renew rate limit slots", exc_info=True)

    def give_back(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease.token, None)
        if lease.slots:
            with self.redis.pipeline(transaction=False) as pipe:
                for scope in lease.slots:
                    pipe.zrem(self._key(scope), lease.token)
                pipe.execute()

    def count(self, scope: str) -> int:
        key = self._key(scope)
        now_s, now_us = self.redis.time()
        return int(self.redis.zcount(key, now_s * 1000 + now_us // 1000, "+inf"))
