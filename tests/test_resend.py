"""The completion email through django-anymail's Resend backend, against a local fake Resend API."""

from __future__ import annotations

import email

import pytest

from llmeval.evaluations.models import Evaluation, Status
from llmeval.notifications.emails import build_message
from llmeval.notifications.models import Notification
from llmeval.notifications.tasks import send_notification
from tests.fakes.http import RecordedRequest, RecordingServer, Reply
from tests.fakes.providers import answer_in_sequence, resend_accepted

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake_resend(settings):
    server = RecordingServer(resend_accepted).start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "llmeval.notifications.backends.ResendEmailBackend",
            "OPTIONS": {"api_key": "re_test_key", "api_url": f"{server.url}/"},
        }
    }
    settings.DEFAULT_FROM_EMAIL = "Evals <evals@example.com>"
    settings.EMAIL_RATE_LIMIT_PER_SECOND = 1000
    yield server
    server.stop()


@pytest.fixture
def finished_notification() -> Notification:
    evaluation = Evaluation.objects.create(
        input_prompt="explain generators in python",
        model="smollm2-135m-instruct",
        max_new_tokens=32,
        temperature=0.7,
        status=Status.COMPLETED,
        response="A generator yields values lazily.",
        input_tokens=12,
        output_tokens=7,
        latency_ms=250,
    )
    return Notification.objects.create(evaluation=evaluation, recipient="dev@example.com")


def test_resend_payload_and_headers(fake_resend, finished_notification):
    send_notification.apply(args=(str(finished_notification.id),))

    [request] = fake_resend.recorded()
    assert request.path == "/emails"
    assert request.headers["authorization"] == "Bearer re_test_key"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == f"llmeval-notification-{finished_notification.id}"
    payload = request.json()
    assert payload["from"] == "Evals <evals@example.com>"
    assert payload["to"] == ["dev@example.com"]
    assert payload["subject"] == "Evaluation completed: explain generators in python"
    assert "A generator yields values lazily." in payload["text"]
    assert "A generator yields values lazily." in payload["html"]
    assert f"/api/evaluate/{finished_notification.evaluation_id}" in payload["text"]

    finished_notification.refresh_from_db()
    assert finished_notification.status == "sent"
    assert finished_notification.provider_message_id.startswith("resend-")
    assert finished_notification.attempts == 1


def test_resend_validation_error_is_not_retried(fake_resend, finished_notification):
    fake_resend.reset(
        lambda request: Reply(
            status=422,
            body={"statusCode": 422, "name": "validation_error", "message": "Invalid `to` field."},
        )
    )

    send_notification.apply(args=(str(finished_notification.id),))

    finished_notification.refresh_from_db()
    assert finished_notification.status == "failed"
    assert "422" in finished_notification.last_error
    assert len(fake_resend.recorded()) == 1


def test_sent_notification_is_not_sent_again(fake_resend, finished_notification):
    send_notification.apply(args=(str(finished_notification.id),))
    send_notification.apply(args=(str(finished_notification.id),))

    assert len(fake_resend.recorded()) == 1


def test_rate_limited_then_sent_with_same_key(fake_resend, finished_notification):
    limited = Reply(status=429, body={"name": "rate_limit_exceeded"}, headers={"Retry-After": "1"})
    fake_resend.reset(answer_in_sequence(limited, Reply(body={"id": "resend-after-429"})))

    send_notification.apply(args=(str(finished_notification.id),))

    first, second = fake_resend.recorded()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    finished_notification.refresh_from_db()
    assert finished_notification.status == "sent"
    assert finished_notification.provider_message_id == "resend-after-429"
    # Resend did not process the request that got the 429, so no attempt is counted.
    assert finished_notification.attempts == 1


def test_forbidden_is_failed_and_evaluation_stays_completed(fake_resend, finished_notification):
    fake_resend.reset(
        lambda request: Reply(
            status=403,
            body={
                "statusCode": 403,
                "name": "validation_error",
                "message": "The example.com domain is not verified.",
            },
        )
    )

    send_notification.apply(args=(str(finished_notification.id),))

    finished_notification.refresh_from_db()
    assert finished_notification.status == "failed"
    assert "domain is not verified" in finished_notification.last_error
    assert finished_notification.evaluation.status == "completed"
    assert len(fake_resend.recorded()) == 1


def test_dropped_connection_after_accepting_sends_once(fake_resend, finished_notification):
    delivered: dict[str, str] = {}

    def accept_then_drop_first(request: RecordedRequest) -> Reply:
        key = request.headers["idempotency-key"]
        first_time = key not in delivered
        # Resend stores the email under its key, so a repeat returns the same id.
        delivered.setdefault(key, f"resend-{len(delivered) + 1}")
        if first_time:
            return Reply(drop_connection=True)
        return Reply(body={"id": delivered[key]})

    fake_resend.reset(accept_then_drop_first)

    send_notification.apply(args=(str(finished_notification.id),))

    assert len(delivered) == 1
    assert len(fake_resend.recorded()) == 2
    finished_notification.refresh_from_db()
    assert finished_notification.status == "sent"
    assert finished_notification.provider_message_id == "resend-1"


def test_prompt_cannot_add_email_headers(finished_notification):
    evaluation = finished_notification.evaluation
    evaluation.input_prompt = "=?utf-8?q?=0D=0AReply-To:_attacker@evil.example?=\r\nBcc: x@y.z"
    evaluation.save()

    raw = build_message(finished_notification).message().as_bytes()
    parsed = email.message_from_bytes(raw)

    assert parsed["Reply-To"] is None
    assert parsed["Bcc"] is None
    assert parsed["To"] == "dev@example.com"
    allowed = {"Content-Type", "MIME-Version", "Subject", "From", "To", "Date", "Message-ID"}
    assert set(parsed.keys()) <= allowed
