"""Per-key request limits, counted in the shared cache (Redis) so every API process agrees.

Each limit is a fixed window: one counter per key and window, raised with an
atomic increment. That costs two cache round trips whatever the rate, where
DRF's SimpleRateThrottle stores and rewrites every request's timestamp.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from llmeval.accounts.models import ApiKey

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """Parse "N/period" (period: sec, min, hour or day) into (requests, seconds)."""
    count, _, period = rate.partition("/")
    if period not in PERIODS or not count.isdigit():
        raise ValueError(f"Invalid rate {rate!r}: use N/sec, N/min, N/hour or N/day.")
    return int(count), PERIODS[period]


class ApiKeyRateThrottle(BaseThrottle):
    """Count requests per API key; anonymous requests are counted per client address.

    When the cache (Redis) is unreachable the request is let through: a stored
    evaluation matters more than an exact limit during an outage.
    """

    scope = ""

    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if rate is None:
            return True
        limit, period = parse_rate(str(rate))

        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{self._ident(request)}:{window}"
        try:
            count = _increment(key, period + 1)
        except (RedisError, OSError, ValueError) as exc:
            logger.warning(
                "throttle.cache_unavailable scope=%s error=%s", self.scope, type(exc).__name__
            )
            return True

        if count <= limit:
            return True
        self._wait = (window + 1) * period - now
        return False

    def wait(self) -> float:
        return max(1.0, self._wait)

    def _ident(self, request: Request) -> str:
        if isinstance(request.auth, ApiKey):
            return f"key:{request.auth.pk}"
        return f"ip:{self.get_ident(request)}"


def _increment(key: str, timeout: int) -> int:
    """Add one to a window's counter and return it, in one round trip when the cache is Redis."""
    client = _redis_client()
    if client is None:
        cache.add(key, 0, timeout=timeout)
        return int(cache.incr(key))

    full_key = cache.make_key(key)
    pipeline = client.pipeline(transaction=False)
    pipeline.incr(full_key)
    pipeline.expire(full_key, timeout, nx=True)
    count, _ = pipeline.execute()
    return int(count)


def _redis_client() -> Any:
    """Return the redis-py client behind Django's Redis cache, or None for another backend."""
    inner = getattr(cache, "_cache", None)
    get_client = getattr(inner, "get_client", None)
    return get_client(write=True) if get_client is not None else None


class SubmitRateThrottle(ApiKeyRateThrottle):
    scope = "submit"


class ReadRateThrottle(ApiKeyRateThrottle):
    scope = "read"


class EmailRateThrottle(ApiKeyRateThrottle):
    """Submissions that ask for an email, checked only when a recipient is given."""

    scope = "email"


def throttles_for(method: str) -> list[Any]:
    if method == "POST":
        return [SubmitRateThrottle()]
    return [ReadRateThrottle()]
