"""A request rate limit shared by every worker process, kept in Redis."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from functools import cache

import redis
from redis.exceptions import LockError

# Sliding one-window log: drop entries older than the window, then admit the
# request if fewer than `limit` remain. Redis's own clock is used so that
# workers on several machines agree. Returns 0 when admitted, otherwise the
# seconds until the oldest entry leaves the window.
_ACQUIRE_SCRIPT = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local member = ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, math.ceil(window * 1000))
    return '0'
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class RateLimiter:
    """Admit at most ``limit`` events per ``window`` seconds across all processes."""

    def __init__(self, name: str, limit: int, window: float, redis_url: str | None) -> None:
        self.key = f"llmeval:ratelimit:{name}"
        self.limit = limit
        self.window = window
        self._client = redis.Redis.from_url(redis_url) if redis_url else None
        self._script = self._client.register_script(_ACQUIRE_SCRIPT) if self._client else None
        # Without Redis (the embedded fallback) the limit applies per process only.
        self._local: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot and return 0, or return the seconds to wait before trying again."""
        if self._script is not None:
            wait = self._script(keys=[self.key], args=[self.window, self.limit, uuid.uuid4().hex])
            return max(0.0, float(wait))
        return self._acquire_locally()

    def _acquire_locally(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._local and self._local[0] <= now - self.window:
                self._local.popleft()
            if len(self._local) < self.limit:
                self._local.append(now)
                return 0.0
            return self._local[0] + self.window - now


# The provider counts a request when it arrives, a few milliseconds after the
# slot was taken here, and that delay varies with the request's size. A window
# a tenth longer than the provider's second keeps two slots taken a second apart
# from arriving within one second there.
EMAIL_RATE_WINDOW_SECONDS = 1.1


@cache
def email_rate_limiter(limit: int, broker_url: str) -> RateLimiter:
    redis_url = broker_url if broker_url.startswith(("redis://", "rediss://", "unix://")) else None
    return RateLimiter("email", limit, EMAIL_RATE_WINDOW_SECONDS, redis_url)


class LeaseLock:
    """A lock held by one worker at a time that expires ``seconds`` after its last renewal.

    It picks the one worker that does a job, and a worker that dies loses it
    when the lease runs out. Without Redis (the embedded fallback) it applies
    within one process only.
    """

    def __init__(self, name: str, seconds: float, client: redis.Redis | None) -> None:
        self.seconds = seconds
        self._redis_lock = (
            client.lock(
                f"llmeval:lease:{name}", timeout=seconds, blocking=False, thread_local=False
            )
            if client is not None
            else None
        )
        self._local_lock = _local_locks.setdefault(name, threading.Lock())
        self._held_locally = False

    def acquire(self) -> bool:
        if self._redis_lock is not None:
            return bool(self._redis_lock.acquire())
        self._held_locally = self._local_lock.acquire(blocking=False)
        return self._held_locally

    def extend(self) -> None:
        """Renew the lease for its full length; do nothing if it was lost meanwhile."""
        if self._redis_lock is not None:
            with contextlib.suppress(LockError):
                self._redis_lock.reacquire()

    def release(self) -> None:
        if self._redis_lock is not None:
            # LockError: the lease ran out and may belong to another worker by now.
            with contextlib.suppress(LockError):
                self._redis_lock.release()
            return
        if self._held_locally:
            self._held_locally = False
            self._local_lock.release()


_local_locks: dict[str, threading.Lock] = {}


@cache
def _redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def lease_lock(name: str, seconds: float, broker_url: str) -> LeaseLock:
    """Return a new handle on the lease lock ``name``, kept in the broker's Redis if it has one."""
    redis_url = broker_url if broker_url.startswith(("redis://", "rediss://", "unix://")) else None
    return LeaseLock(name, seconds, _redis_client(redis_url) if redis_url else None)
