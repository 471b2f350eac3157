"""Per-model limits on calls in flight, shared by every worker through Redis.

A provider allows a fixed number of concurrent requests per key and returns
429 above it. Each worker takes a slot before calling a model whose entry sets
``max_concurrency`` and gives it back afterwards. A slot held by a worker that
died expires after its lease, so a crash cannot shrink the limit for good.

A worker thread may also wait for a slot. ``release`` pushes an entry to a
Redis list of the model, and waiting threads block on that list with
``BLPOP``, so a released slot is taken within a round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

# Give the slot back and, if it was still held, push one entry to the list that
# waiting threads block on. The list keeps at most `limit` entries because no
# more slots than that can be free at once.
_RELEASE_SCRIPT = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
    redis.call('LPUSH', KEYS[2], 1)
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
    redis.call('EXPIRE', KEYS[2], 60)
end
return 0
"""

# A waiting thread tries again after this many seconds even without a release
# entry, because a slot freed by an expired lease pushes none.
RELEASE_POLL_SECONDS = 1.0


class ConcurrencyLimiter:
    """Concurrency slots per model.

    ``acquire`` returns at once unless it is given ``wait_seconds``, so callers
    choose how long to wait.
    """

    def __init__(self, redis_url: str | None) -> None:
        self._client = redis.Redis.from_url(redis_url) if redis_url else None
        self._acquire_script = (
            self._client.register_script(_ACQUIRE_SCRIPT) if self._client else None
        )
        self._release_script = (
            self._client.register_script(_RELEASE_SCRIPT) if self._client else None
        )
        # Without Redis (the embedded fallback) the limit applies per process only.
        self._local: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._waiters: dict[str, int] = {}

    def acquire(
        self, model: str, limit: int, token: str, lease_seconds: float, wait_seconds: float = 0.0
    ) -> bool:
        """Take a slot for ``token``, waiting up to ``wait_seconds`` for one to be released."""
        deadline = time.monotonic() + wait_seconds
        while True:
            if self._try_acquire(model, limit, token, lease_seconds):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wait_for_release(model, min(remaining, RELEASE_POLL_SECONDS))

    def release(self, model: str, token: str, limit: int) -> None:
        """Give back the slot of ``token`` and wake one thread waiting for it."""
        if self._release_script is not None:
            self._release_script(keys=[_key(model), _released_key(model)], args=[token, limit])
            return
        with self._lock:
            if self._local.get(model, {}).pop(token, None) is not None:
                self._released.notify()

    def in_use(self, model: str) -> int:
        if self._client is not None:
            return int(self._client.zcard(_key(model)))
        with self._lock:
            return len(self._local.get(model, {}))

    @contextmanager
    def waiting_place(self, model: str, max_waiters: int) -> Iterator[bool]:
        """Count the calling thread among this process's waiters for ``model``.

        Yields False, and counts nothing, when ``max_waiters`` threads of this
        process are already counted, so a model with few slots cannot hold
        every thread of a worker.
        """
        with self._lock:
            admitted = self._waiters.get(model, 0) < max_waiters
            if admitted:
                self._waiters[model] = self._waiters.get(model, 0) + 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self._waiters[model] -= 1

    def _try_acquire(self, model: str, limit: int, token: str, lease_seconds: float) -> bool:
        if self._acquire_script is not None:
            acquired = self._acquire_script(keys=[_key(model)], args=[limit, lease_seconds, token])
            return bool(int(acquired))
        return self._acquire_locally(model, limit, token, lease_seconds)

    def _wait_for_release(self, model: str, timeout: float) -> None:
        if self._client is not None:
            # Redis 6 and later accept a timeout in fractions of a second, and 0
            # would block with no end, so the timeout is at least 10 ms.
            self._client.blpop([_released_key(model)], timeout=max(0.01, timeout))
            return
        with self._lock:
            self._released.wait(timeout)

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


def _released_key(model: str) -> str:
    return f"llmeval:concurrency:{model}:released"


@cache
def concurrency_limiter(broker_url: str) -> ConcurrencyLimiter:
    redis_url = broker_url if broker_url.startswith(("redis://", "rediss://", "unix://")) else None
    return ConcurrencyLimiter(redis_url)
