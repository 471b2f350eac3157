"""The email send rate is shared through Redis by every limiter with the same name."""

from __future__ import annotations

import time
import uuid

import redis

from llmeval.celery import app
from llmeval.ratelimit import RateLimiter


def make_limiters(count: int, limit: int) -> list[RateLimiter]:
    name = f"test-{uuid.uuid4().hex}"
    return [RateLimiter(name, limit, 1.0, app.conf.broker_url) for _ in range(count)]


def test_limit_is_shared_between_processes():
    first, second = make_limiters(2, limit=2)

    waits = [first.acquire(), second.acquire(), first.acquire(), second.acquire()]

    assert waits[:2] == [0.0, 0.0]
    assert 0 < waits[2] <= 1.0
    assert 0 < waits[3] <= 1.0


def test_slot_frees_after_window():
    [limiter] = make_limiters(1, limit=1)
    assert limiter.acquire() == 0.0

    wait = limiter.acquire()
    time.sleep(wait + 0.05)

    assert limiter.acquire() == 0.0


def test_key_expires():
    [limiter] = make_limiters(1, limit=1)
    limiter.acquire()

    ttl = redis.Redis.from_url(app.conf.broker_url).pttl(limiter.key)

    assert 0 < ttl <= 1000


def test_without_redis_limits_locally():
    limiter = RateLimiter("local", 2, 1.0, None)

    assert [limiter.acquire() > 0 for _ in range(3)] == [False, False, True]
