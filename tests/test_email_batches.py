"""Completion emails sent in batches through Resend's batch endpoint, each email once.

The fake Resend (bench/fake_resend.py) speaks Resend's wire format, keeps its
idempotency keys and enforces a rate limit per API key, as the real API does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from bench.fake_resend import FakeResendApi, FakeResendServer
from django.core.mail import mailers
from django.utils import timezone

from llmeval.evaluations.models import Evaluation, Status
from llmeval.notifications import services, tasks
from llmeval.notifications.models import Notification, NotificationStatus
from llmeval.notifications.tasks import flush_notifications, send_notification
from tests.fakes.http import Handler, RecordedRequest, RecordingServer, Reply

pytestmark = pytest.mark.django_db


def use_resend(settings: object, url: str, rate_limit: int) -> None:
    settings.MAILERS = {  # type: ignore[attr-defined]
        "default": {
            "BACKEND": "llmeval.notifications.backends.ResendEmailBackend",
            "OPTIONS": {"api_key": "re_test_key", "api_url": f"{url}/"},
        }
    }
    settings.DEFAULT_FROM_EMAIL = "Evals <evals@example.com>"  # type: ignore[attr-defined]
    settings.EMAIL_RATE_LIMIT_PER_SECOND = rate_limit  # type: ignore[attr-defined]


@contextmanager
def scripted_resend(settings: object, handler: Handler) -> Iterator[RecordingServer]:
    """Serve Resend's API with ``handler`` building each reply, with no send rate limit."""
    server = RecordingServer(handler).start()
    use_resend(settings, server.url, rate_limit=1000)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def resend_api() -> FakeResendApi:
    return FakeResendApi(rate_limit=2)


@pytest.fixture
def fake_resend(settings: object, resend_api: FakeResendApi) -> Iterator[FakeResendServer]:
    server = FakeResendServer(resend_api).start()
    use_resend(settings, server.url, rate_limit=2)
    yield server
    server.stop()


def finished_notifications(count: int, recipient: str = "dev@example.com") -> list[Notification]:
    evaluations = Evaluation.objects.bulk_create(
        Evaluation(
            input_prompt=f"question number {index}",
            model="smollm2-135m-instruct",
            max_new_tokens=32,
            temperature=0.7,
            status=Status.COMPLETED,
            response=f"answer number {index}",
            completed_at=timezone.now(),
        )
        for index in range(count)
    )
    return Notification.objects.bulk_create(
        Notification(evaluation=evaluation, recipient=recipient) for evaluation in evaluations
    )


def test_burst_sent_in_rate_limited_batches(fake_resend, resend_api):
    notifications = finished_notifications(250)

    send_notification.apply(args=(str(notifications[0].id),))

    batch_requests = [r for r in resend_api.requests if r.path == "/emails/batch"]
    assert [len(r.json()) for r in batch_requests] == [100, 100, 50]
    assert resend_api.rejected_429 == 0
    keys = [r.headers["idempotency-key"] for r in batch_requests]
    assert len(set(keys)) == 3
    assert all(key.startswith("llmeval-batch-") for key in keys)
    assert batch_requests[0].headers["authorization"] == "Bearer re_test_key"
    first_email = batch_requests[0].json()[0]
    assert first_email["from"] == "Evals <evals@example.com>"
    assert first_email["to"] == ["dev@example.com"]
    assert first_email["subject"].startswith("Evaluation completed: question number")
    assert "answer number" in first_email["text"]
    assert "answer number" in first_email["html"]
    # The third request waited for the provider's second to pass.
    assert batch_requests[2].received_at - batch_requests[0].received_at >= 1.0

    stats = resend_api.stats()
    assert stats["emails_delivered"] == stats["distinct_evaluations"] == 250
    rows = Notification.objects.all()
    assert {row.status for row in rows} == {NotificationStatus.SENT}
    assert {row.provider_message_id for row in rows} == {e.id for e in resend_api.delivered}
    assert {row.attempts for row in rows} == {1}


def test_sent_rows_send_nothing_more(fake_resend, resend_api):
    notifications = finished_notifications(5)

    for notification in notifications:
        send_notification.apply(args=(str(notification.id),))

    assert len(resend_api.requests) == 1
    assert resend_api.stats()["emails_delivered"] == 5


def test_unfinished_evaluation_rows_wait(fake_resend, resend_api):
    [ready] = finished_notifications(1)
    running = Evaluation.objects.create(
        input_prompt="still running",
        model="smollm2-135m-instruct",
        max_new_tokens=32,
        temperature=0.7,
        status=Status.RUNNING,
    )
    waiting = Notification.objects.create(evaluation=running, recipient="dev@example.com")

    flush_notifications.apply()

    [request] = resend_api.requests
    assert request.path == "/emails"
    assert request.headers["idempotency-key"] == ready.idempotency_key
    waiting.refresh_from_db()
    assert waiting.status == NotificationStatus.PENDING


def test_rejected_batch_split_into_singles(fake_resend, resend_api, settings):
    settings.EMAIL_RATE_LIMIT_PER_SECOND = 1000
    resend_api.rate_limit = 1000
    good = finished_notifications(2)
    # Django and anymail accept this address; Resend does not.
    [bad] = finished_notifications(1, recipient="dev@localhost")

    flush_notifications.apply()

    paths = [r.path for r in resend_api.requests]
    assert paths[0] == "/emails/batch"
    assert resend_api.requests[0].status == 422
    assert sorted(paths[1:]) == ["/emails", "/emails", "/emails"]
    for notification in good:
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.SENT
    bad.refresh_from_db()
    assert bad.status == NotificationStatus.FAILED
    assert "422" in bad.last_error
    assert "`to`" in bad.last_error
    assert resend_api.stats()["emails_delivered"] == 2


def test_unbuildable_email_fails_alone(fake_resend, resend_api):
    good = finished_notifications(2)
    [bad] = finished_notifications(1, recipient="not-an-address")

    flush_notifications.apply()

    [request] = resend_api.requests
    assert request.path == "/emails/batch"
    assert [email["to"] for email in request.json()] == [["dev@example.com"]] * 2
    bad.refresh_from_db()
    assert bad.status == NotificationStatus.FAILED
    assert bad.last_error.startswith("the email could not be built: AnymailInvalidAddress")
    for notification in good:
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.SENT


def test_lost_response_resent_with_same_key(settings, resend_api):
    resend_api.rate_limit = 1000
    dropped: list[str] = []

    def accept_then_drop_first(request: RecordedRequest) -> Reply:
        status, body, headers = resend_api.handle(
            "POST", request.path, request.headers, request.body
        )
        if not dropped:
            dropped.append(request.headers["idempotency-key"])
            return Reply(drop_connection=True)
        return Reply(status=status, body=body, headers=headers)

    with scripted_resend(settings, accept_then_drop_first) as server:
        finished_notifications(3)
        flush_notifications.apply()

    first, second = server.recorded()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == dropped[0]
    assert resend_api.replayed == 1
    assert resend_api.stats()["emails_delivered"] == 3
    rows = Notification.objects.all()
    assert {row.status for row in rows} == {NotificationStatus.SENT}
    assert {row.attempts for row in rows} == {2}
    assert {row.provider_message_id for row in rows} == {e.id for e in resend_api.delivered}


def test_dead_worker_batch_resent_whole(fake_resend, resend_api, settings):
    settings.EMAIL_RATE_LIMIT_PER_SECOND = 1000
    resend_api.rate_limit = 1000
    finished_notifications(4)
    # A worker claims a batch, sends it, and dies before recording the outcome.
    batch = services.claim_batch(limit=100)
    assert batch is not None
    connection = mailers.default
    tasks._deliver(batch, tasks._build_messages(batch, connection), connection)
    finished_notifications(2)  # ready after the claim: not part of that batch
    Notification.objects.filter(claimed_by=batch.id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    flush_notifications.apply()

    first, replay, rest = resend_api.requests
    assert replay.headers["idempotency-key"] == first.headers["idempotency-key"]
    assert replay.body == first.body
    assert len(rest.json()) == 2
    assert resend_api.replayed == 1
    stats = resend_api.stats()
    assert stats["emails_delivered"] == stats["distinct_evaluations"] == 6
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.SENT}


def test_forbidden_batch_fails_whole(settings):
    forbidden = Reply(
        status=403,
        body={"statusCode": 403, "name": "validation_error", "message": "API key is invalid"},
    )

    with scripted_resend(settings, lambda request: forbidden) as server:
        finished_notifications(3)
        flush_notifications.apply()

    [request] = server.recorded()
    assert request.path == "/emails/batch"
    rows = Notification.objects.all()
    assert {row.status for row in rows} == {NotificationStatus.FAILED}
    assert all("API key is invalid" in row.last_error for row in rows)
