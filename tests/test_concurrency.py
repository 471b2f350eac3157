"""Per-model concurrency limits: shared through Redis, and respected by the workers."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from celery.exceptions import Retry

from llmeval.celery import app
from llmeval.evaluations import services, tasks
from llmeval.evaluations.models import Evaluation
from llmeval.providers.concurrency import RELEASE_POLL_SECONDS, ConcurrencyLimiter
from tests.fakes.providers import chat_completion


def test_slots_are_shared_and_released():
    model = f"test-{uuid.uuid4().hex}"
    first, second = (ConcurrencyLimiter(app.conf.broker_url) for _ in range(2))

    acquired = [first.acquire(model, 2, "a", 30), second.acquire(model, 2, "b", 30)]
    over_limit = first.acquire(model, 2, "c", 30)
    second.release(model, "b", 2)
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


@pytest.mark.parametrize("redis_url", [app.conf.broker_url, None], ids=["redis", "local"])
def test_waiter_takes_released_slot(redis_url):
    model = f"test-{uuid.uuid4().hex}"
    holder, waiter = (ConcurrencyLimiter(redis_url) for _ in range(2))
    if redis_url is None:
        # Without Redis the slots are per process, so both sides share one limiter.
        waiter = holder
    holder.acquire(model, 1, "holder", 30)
    results: list[tuple[bool, float]] = []

    def wait_for_slot() -> None:
        started = time.monotonic()
        acquired = waiter.acquire(model, 1, "waiter", 30, wait_seconds=5)
        results.append((acquired, time.monotonic() - started))

    thread = threading.Thread(target=wait_for_slot)
    thread.start()
    time.sleep(0.2)
    holder.release(model, "holder", 1)
    thread.join(timeout=10)

    [(acquired, waited)] = results
    assert acquired is True
    assert 0.15 < waited < 0.2 + RELEASE_POLL_SECONDS / 2
    assert waiter.in_use(model) == 1


def test_waiter_gives_up_after_wait_seconds():
    model = f"test-{uuid.uuid4().hex}"
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    limiter.acquire(model, 1, "holder", 30)

    started = time.monotonic()
    acquired = limiter.acquire(model, 1, "waiter", 30, wait_seconds=0.3)
    waited = time.monotonic() - started

    assert acquired is False
    assert 0.25 < waited < 1.0
    assert limiter.in_use(model) == 1


def test_waiter_takes_expired_slot():
    model = f"test-{uuid.uuid4().hex}"
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    limiter.acquire(model, 1, "dead-worker", 0.3)

    started = time.monotonic()
    acquired = limiter.acquire(model, 1, "waiter", 30, wait_seconds=5)
    waited = time.monotonic() - started

    # An expired lease pushes no release entry, so the waiter finds it when it polls.
    assert acquired is True
    assert waited < RELEASE_POLL_SECONDS + 0.5


def test_release_of_expired_slot_wakes_nobody():
    model = f"test-{uuid.uuid4().hex}"
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    limiter.acquire(model, 1, "slow-worker", 0.1)
    time.sleep(0.2)
    limiter.acquire(model, 1, "next", 30)

    limiter.release(model, "slow-worker", 1)

    assert limiter.in_use(model) == 1
    assert limiter.acquire(model, 1, "third", 30, wait_seconds=0.2) is False


def test_release_entries_are_capped_at_limit():
    model = f"test-{uuid.uuid4().hex}"
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    for index in range(5):
        limiter.acquire(model, 2, f"t{index}", 30)
        limiter.release(model, f"t{index}", 2)

    client = limiter._client
    assert client is not None
    assert client.llen(f"llmeval:concurrency:{model}:released") == 2


def test_waiting_place_admits_max_waiters():
    limiter = ConcurrencyLimiter(None)

    with (
        limiter.waiting_place("m", 1) as first,
        limiter.waiting_place("m", 1) as second,
        limiter.waiting_place("other", 1) as other_model,
    ):
        assert (first, second, other_model) == (True, False, True)
    with limiter.waiting_place("m", 1) as after_exit:
        assert after_exit is True


@pytest.mark.django_db
def test_release_unstarted_gives_attempt_back():
    evaluation = Evaluation.objects.create(
        input_prompt="hi", model="limited", max_new_tokens=8, temperature=0.7
    )
    claimed = services.claim(evaluation.id, "task-1")
    assert claimed is not None

    assert services.release_unstarted(claimed) is True

    evaluation.refresh_from_db()
    assert evaluation.status == "pending"
    assert evaluation.attempts == 0
    assert evaluation.started_at is None
    assert evaluation.lease_expires_at is None
    reclaimed = services.claim(evaluation.id, "task-1")
    assert reclaimed is not None
    assert reclaimed.attempts == 1


@pytest.mark.django_db
def test_release_unstarted_keeps_earlier_start():
    evaluation = Evaluation.objects.create(
        input_prompt="hi", model="limited", max_new_tokens=8, temperature=0.7
    )
    first = services.claim(evaluation.id, "task-1")
    assert first is not None
    services.release_for_retry(first, "the provider is unavailable")
    second = services.claim(evaluation.id, "task-1")
    assert second is not None

    assert services.release_unstarted(second) is True

    evaluation.refresh_from_db()
    assert evaluation.attempts == 1
    assert evaluation.started_at == first.started_at


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


@pytest.mark.django_db(transaction=True)
def test_worker_waits_for_released_slot(api_client, worker, fake_provider, wait_until_finished):
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    holder_tokens = [f"test-holder-{index}" for index in range(2)]
    assert all(limiter.acquire("limited", 2, token, 60) for token in holder_tokens)
    try:
        body = {"input_prompt": "Count to three.", "model": "limited", "max_new_tokens": 8}
        evaluation_id = api_client.post("/api/evaluate", body, format="json").json()["id"]
        time.sleep(1.0)
        waiting = Evaluation.objects.get(pk=evaluation_id)
        assert fake_provider.recorded() == []

        released_at = time.monotonic()
        for token in holder_tokens:
            limiter.release("limited", token, 2)
        holder_tokens.clear()
        evaluation = wait_until_finished(evaluation_id)
        finished_after = time.monotonic() - released_at
    finally:
        for token in holder_tokens:
            limiter.release("limited", token, 2)

    # The claimed row waited in the worker's thread and took the slot when it was released.
    assert waiting.status == "running"
    assert evaluation.status == "completed"
    assert evaluation.attempts == 1
    assert finished_after < RELEASE_POLL_SECONDS + 1.0


@pytest.mark.django_db(transaction=True)
def test_no_free_slot_gives_row_back(fake_provider, monkeypatch):
    monkeypatch.setattr(tasks, "SLOT_WAIT_SECONDS", 0.2)
    limiter = ConcurrencyLimiter(app.conf.broker_url)
    holder_tokens = [f"test-holder-{index}" for index in range(2)]
    assert all(limiter.acquire("limited", 2, token, 60) for token in holder_tokens)
    evaluation = Evaluation.objects.create(
        input_prompt="hi", model="limited", max_new_tokens=8, temperature=0.7
    )
    try:
        # Called outside a worker, the task raises Retry without publishing a message.
        with pytest.raises(Retry):
            tasks.generate_evaluation.run(str(evaluation.id), model="limited")
    finally:
        for token in holder_tokens:
            limiter.release("limited", token, 2)

    evaluation.refresh_from_db()
    assert evaluation.status == "pending"
    assert evaluation.attempts == 0
    assert fake_provider.recorded() == []
