"""A request rate limit shared by every worker process, kept in Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from functools import cache

import redis

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


@cache
def email_rate_limiter(limit: int, broker_url: str) -> RateLimiter:
    redis_url = broker_url if broker_url.startswith(("redis://", "rediss://", "unix://")) else None
    return RateLimiter("email", limit, 1.0, redis_url)
