"""Batched email sending when batches change, responses are odd or the provider limits the rate.

The fake Resend (bench/fake_resend.py) keeps idempotency keys as Resend does:
a repeat with the same body replays the first response, and a repeat with
another body gets 409 ``invalid_idempotent_request``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.mail import mailers
from django.utils import timezone

from llmeval.evaluations.models import Evaluation
from llmeval.notifications import services, tasks
from llmeval.notifications.emails import build_message
from llmeval.notifications.models import Notification, NotificationStatus
from llmeval.notifications.tasks import flush_notifications
from tests import test_email_batches as batch_tests
from tests.fakes.http import Reply
from tests.test_email_batches import finished_notifications, scripted_resend

# The fixtures of the batch tests, shared by the tests below.
resend_api = batch_tests.resend_api
fake_resend = batch_tests.fake_resend

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast_resend(fake_resend, resend_api, settings):
    """The fake Resend without its rate limit, for tests that do not measure the rate."""
    settings.EMAIL_RATE_LIMIT_PER_SECOND = 1000
    resend_api.rate_limit = 1000
    return resend_api


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(tasks, "backoff_seconds", lambda attempt, minimum=None: 0.0)


def send_then_lose_worker() -> services.Batch:
    """Claim a batch and send it, as a worker that dies before recording the outcome."""
    batch = services.claim_batch(limit=100)
    assert batch is not None
    connection = mailers.default
    tasks._deliver(batch, tasks._build_messages(batch, connection), connection)
    return batch


def expire_lease(batch: services.Batch) -> None:
    Notification.objects.filter(claimed_by=batch.id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def deliveries_of(api, notification: Notification) -> int:
    evaluation_id = str(notification.evaluation_id)
    return sum(1 for email in api.delivered if email.evaluation_id == evaluation_id)


def test_shrunk_batch_resent_under_batch_key(fast_resend):
    remaining, removed = finished_notifications(2)
    batch = send_then_lose_worker()
    # Deleting an evaluation (admin delete, or deleting its owner) deletes its notification.
    Evaluation.objects.filter(pk=removed.evaluation_id).delete()
    expire_lease(batch)

    flush_notifications.apply()

    # The row left is re-sent as a batch of one, under its own key, not the batch's.
    assert deliveries_of(fast_resend, remaining) == 1
    keys = [request.headers["idempotency-key"] for request in fast_resend.requests]
    assert keys[1] == keys[0]


@pytest.mark.parametrize("change", ["public_base_url", "row_deleted"])
def test_changed_batch_recorded_as_sent(fast_resend, no_backoff, settings, change):
    notifications = finished_notifications(3)
    batch = send_then_lose_worker()
    if change == "public_base_url":
        settings.PUBLIC_BASE_URL = "https://evals.example.com"  # a deploy between attempts
    else:
        Evaluation.objects.filter(pk=notifications[2].evaluation_id).delete()
    expire_lease(batch)

    flush_notifications.apply()

    conflicts = [request for request in fast_resend.requests if request.status == 409]
    # A retry with the same body gets the same 409 invalid_idempotent_request.
    assert len(conflicts) <= 1
    rows = Notification.objects.all()
    assert NotificationStatus.FAILED not in {row.status for row in rows}
    assert all(deliveries_of(fast_resend, row) == 1 for row in rows)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body={"data": [{"id": "resend-1"}]}),
        Reply(raw=b"<html>OK</html>", headers={"Content-Type": "text/html"}),
    ],
    ids=["fewer_ids", "non_json"],
)
def test_accepted_batch_recorded_as_sent(settings, reply):
    with scripted_resend(settings, lambda request: reply) as server:
        finished_notifications(2)
        flush_notifications.apply()

    [request] = server.recorded()
    assert request.path == "/emails/batch"
    # With HTTP 200 Resend accepted the batch, so its emails were sent.
    statuses = set(Notification.objects.values_list("status", flat=True))
    assert statuses == {NotificationStatus.SENT}


def test_legacy_row_spares_fresh_rows(settings, no_backoff):
    replies = iter([Reply(status=500, body={"name": "application_error"})])
    accepted = Reply(body={"data": [{"id": "x"}] * 3})

    with scripted_resend(settings, lambda request: next(replies, None) or accepted):
        fresh = finished_notifications(2)
        # The per-email sender before batches put a row back to pending after a
        # transient error, keeping its attempts.
        [legacy] = finished_notifications(1)
        Notification.objects.filter(pk=legacy.pk).update(
            attempts=settings.NOTIFICATION_MAX_ATTEMPTS - 1
        )
        flush_notifications.apply()

    for notification in fresh:
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.SENT, notification.last_error


def test_soft_time_limit_in_build_propagates(fast_resend, monkeypatch):
    _first, second = finished_notifications(2)
    real_build = build_message

    def build_until_time_limit(notification):
        if notification.pk == second.pk:
            raise SoftTimeLimitExceeded()
        return real_build(notification)

    monkeypatch.setattr(tasks, "build_message", build_until_time_limit)

    with pytest.raises(SoftTimeLimitExceeded):
        tasks.send_ready_notifications()

    second.refresh_from_db()
    assert second.status != NotificationStatus.FAILED


def test_rate_limit_answers_count_no_attempt(settings, no_backoff):
    limited = Reply(
        status=429,
        body={"statusCode": 429, "name": "rate_limit_exceeded"},
        headers={"Retry-After": "0"},
    )
    replies = iter([limited] * settings.NOTIFICATION_MAX_ATTEMPTS)
    accepted = Reply(body={"data": [{"id": "x"}] * 3})

    # Another sender on the same Resend team key uses up the shared rate.
    with scripted_resend(settings, lambda request: next(replies, None) or accepted):
        finished_notifications(3)
        flush_notifications.apply()

    # A 429 means Resend did not process the request, so it should not count as an attempt.
    statuses = set(Notification.objects.values_list("status", flat=True))
    assert statuses == {NotificationStatus.SENT}
