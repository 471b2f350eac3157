"""Per-model limits on calls in flight, shared by every worker through Redis.

A provider allows a fixed number of concurrent requests per key and returns
429 above it. Each worker takes a slot before calling a model whose entry sets
``max_concurrency`` and gives it back afterwards. A slot held by a worker that
died expires after its lease, so a crash cannot shrink the limit for good.
"""

from __future__ import annotations

import threading
import time
from functools import cache

import redis

# Drop expired slots, then take one if fewer than `limit` are held. Redis's
# clock is used so that workers on several machines agree.
_ACQUIRE_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local token = ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now + lease, token)
    redis.call('EXPIRE', key, math.ceil(lease) + 60)
    return 1
end
return 0
"""


class ConcurrencyLimiter:
    """Concurrency slots per model. ``acquire`` returns at once, so callers choose how to wait."""

    def __init__(self, redis_url: str | None) -> None:
        self._client = redis.Redis.from_url(redis_url) if redis_url else None
        self._script = self._client.register_script(_ACQUIRE_SCRIPT) if self._client else None
        # Without Redis (the embedded fallback) the limit applies per process only.
        self._local: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, model: str, limit: int, token: str, lease_seconds: float) -> bool:
        if self._script is not None:
            acquired = self._script(keys=[_key(model)], args=[limit, lease_seconds, token])
            return bool(int(acquired))
        return self._acquire_locally(model, limit, token, lease_seconds)

    def release(self, model: str, token: str) -> None:
        if self._client is not None:
            self._client.zrem(_key(model), token)
            return
        with self._lock:
            self._local.get(model, {}).pop(token, None)

    def in_use(self, model: str) -> int:
        if self._client is not None:
            return int(self._client.zcard(_key(model)))
        with self._lock:
            return len(self._local.get(model, {}))

    def _acquire_locally(self, model: str, limit: int, token: str, lease_seconds: float) -> bool:
        now = time.monotonic()
        with self._lock:
            slots = self._local.setdefault(model, {})
            for slot_token, expires in list(slots.items()):
                if expires <= now:
                    del slots[slot_token]
            if len(slots) >= limit:
                return False
            slots[token] = now + lease_seconds
            return True


def _key(model: str) -> str:
    return f"llmeval:concurrency:{model}"


@cache
def concurrency_limiter(broker_url: str) -> ConcurrencyLimiter:
    redis_url = broker_url if broker_url.startswith(("redis://", "rediss://", "unix://")) else None
    return ConcurrencyLimiter(redis_url)
