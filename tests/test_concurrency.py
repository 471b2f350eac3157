"""Per-model concurrency limits: shared through Redis, and respected by the workers."""

from __future__ import annotations

import time
import uuid

import pytest

from llmeval.celery import app
from llmeval.providers.concurrency import ConcurrencyLimiter
from tests.fakes.providers import chat_completion


def test_slots_are_shared_and_released():
    model = f"test-{uuid.uuid4().hex}"
    first, second = (ConcurrencyLimiter(app.conf.broker_url) for _ in range(2))

    acquired = [first.acquire(model, 2, "a", 30), second.acquire(model, 2, "b", 30)]
    over_limit = first.acquire(model, 2, "c", 30)
    second.release(model, "b")
    after_release = first.acquire(model, 2, "c", 30)

    assert acquired == [True, True]
    assert over_limit is False
    assert after_release is True
    assert first.in_use(model) == 2


def test_expired_slot_is_freed():
    model = f"test-{uuid.uuid4().hex}"
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    limiter.acquire(model, 1, "dead-worker", 0.2)

    time.sleep(0.3)

    assert limiter.acquire(model, 1, "next", 30) is True


def test_local_limiter_without_redis():
    limiter = ConcurrencyLimiter(None)

    assert [limiter.acquire("m", 1, token, 30) for token in "ab"] == [True, False]


@pytest.mark.django_db(transaction=True)
def test_worker_respects_model_limit(api_client, worker, fake_provider, wait_until_finished):
    fake_provider.reset(lambda request: chat_completion("Done.", delay=0.5))
    body = {"input_prompt": "Count to three.", "model": "limited", "max_new_tokens": 8}

    ids = [api_client.post("/api/evaluate", body, format="json").json()["id"] for _ in range(6)]
    evaluations = [wait_until_finished(evaluation_id) for evaluation_id in ids]

    assert [e.status for e in evaluations] == ["completed"] * 6
    assert [e.attempts for e in evaluations] == [1] * 6
    assert len(fake_provider.recorded()) == 6
    assert fake_provider.max_in_flight == 2
