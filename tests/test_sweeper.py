"""The sweeper re-enqueues rows whose message was lost and fails rows that used every attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from llmeval.evaluations import sweeper
from llmeval.evaluations.models import Evaluation, Status
from llmeval.notifications.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)


def make_evaluation(**fields) -> Evaluation:
    values = {
        "input_prompt": "Say hi.",
        "model": "google/gemma-2-2b-it",
        "max_new_tokens": 8,
        "temperature": 0.7,
        **fields,
    }
    return Evaluation.objects.create(**values)


def test_lost_pending_row_is_requeued(worker, wait_until_finished, fake_provider):
    old = timezone.now() - timedelta(hours=1)
    evaluation = make_evaluation()
    Evaluation.objects.filter(pk=evaluation.pk).update(queued_at=old)

    report = sweeper.sweep()

    assert report.requeued == 1
    assert wait_until_finished(str(evaluation.id)).status == "completed"


def test_fresh_pending_row_is_left_alone():
    make_evaluation()

    assert sweeper.sweep().requeued == 0


def test_abandoned_row_with_attempts_left_is_requeued(worker, wait_until_finished):
    expired = timezone.now() - timedelta(seconds=1)
    evaluation = make_evaluation(status=Status.RUNNING, attempts=1, lease_expires_at=expired)

    report = sweeper.sweep()

    assert report.requeued == 1
    finished = wait_until_finished(str(evaluation.id))
    assert finished.status == "completed"
    assert finished.attempts == 2


def test_abandoned_row_without_attempts_left_fails(worker, wait_until_notified):
    expired = timezone.now() - timedelta(seconds=1)
    evaluation = make_evaluation(status=Status.RUNNING, attempts=3, lease_expires_at=expired)
    Notification.objects.create(evaluation=evaluation, recipient="dev@example.com")

    report = sweeper.sweep()

    evaluation.refresh_from_db()
    assert report.failed == 1
    assert evaluation.status == "failed"
    assert "worker was lost during each of 3 attempts" in evaluation.error
    assert wait_until_notified(str(evaluation.id)).status == "sent"


def test_running_row_within_lease_is_left_alone():
    lease = timezone.now() + timedelta(minutes=5)
    evaluation = make_evaluation(status=Status.RUNNING, attempts=1, lease_expires_at=lease)

    report = sweeper.sweep()

    evaluation.refresh_from_db()
    assert not report.any()
    assert evaluation.status == "running"


def test_unregistered_model_fails():
    old = timezone.now() - timedelta(hours=1)
    evaluation = make_evaluation(model="removed-model")
    Evaluation.objects.filter(pk=evaluation.pk).update(queued_at=old)

    sweeper.sweep()

    evaluation.refresh_from_db()
    assert evaluation.status == "failed"
    assert "no longer registered" in evaluation.error
