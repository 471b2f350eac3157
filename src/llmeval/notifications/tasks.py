"""Worker tasks: send the completion emails of finished evaluations, in batches, once each.

Every finished evaluation with a recipient enqueues ``send_notification``. One
worker at a time holds the sender lease and sends the ready notifications in
batches (up to 100 for Resend, whose batch endpoint accepts that many). For
each batch it waits for a slot of the shared send rate, sends one request and
records the outcome. The other tasks find the lease taken and return, because
the worker holding it takes their rows too. A burst of finished evaluations
therefore costs one provider request per hundred emails.
"""

from __future__ import annotations

import logging
import random
import smtplib
import time
import uuid
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRequestsAPIError
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import EmailMessage, mailers
from django.core.mail.backends.base import BaseEmailBackend

from llmeval.celery import app
from llmeval.celery_config import QUEUE_NOTIFY
from llmeval.notifications import services
from llmeval.notifications.emails import build_message
from llmeval.ratelimit import LeaseLock, email_rate_limiter, lease_lock
from llmeval.tasking import backoff_seconds, project_task

logger = logging.getLogger(__name__)

TRANSIENT_HTTP_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# Statuses with which the provider rejects a request for its content before sending
# anything. A batch split into single emails may then succeed in part.
REJECTED_CONTENT_STATUSES = frozenset({400, 422})
# The sender lease outlives the longest step (one request, 30 s at most) with room to spare.
SENDER_LEASE_SECONDS = 90
# A sender hands over to a new task after this long, so no task runs for hours.
SENDER_TURN_SECONDS = 60
TASK_TIME_LIMIT_SECONDS = SENDER_TURN_SECONDS + SENDER_LEASE_SECONDS
# A transient error with a shorter wait is retried by the sender itself.
RETRY_IN_PLACE_SECONDS = 5.0
# Added to a delayed batch's countdown so its lease has expired when the task runs.
LEASE_MARGIN_SECONDS = 1.0
# 429 responses in a row that the sender waits out in place. They count no
# attempt, because the provider did not process the request.
RATE_LIMITED_RETRIES_IN_PLACE = 10
# Resend's error name for a known Idempotency-Key sent with another body.
KEY_USED_WITH_ANOTHER_BODY = "invalid_idempotent_request"


class NotificationSendError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
        error_name: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.error_name = error_name

    @property
    def already_accepted(self) -> bool:
        """Whether the provider accepted an earlier request under this key.

        Resend returns 409 ``invalid_idempotent_request`` when a key that it
        stored, which it does for an accepted request, comes back with another
        body. That happens when the batch lost a row, or its text changed,
        between attempts, and its emails were already sent.
        """
        return self.status == 409 and self.error_name == KEY_USED_WITH_ANOTHER_BODY


@project_task(name="notifications.send", queue=QUEUE_NOTIFY, time_limit=TASK_TIME_LIMIT_SECONDS)
def send_notification(self: Task[Any, Any], notification_id: str) -> None:
    """Make sure this notification's email goes out, together with any others that are ready."""
    if not services.is_waiting(uuid.UUID(notification_id)):
        logger.info("notification.skip_not_waiting notification=%s", notification_id)
        return
    send_ready_notifications()


@project_task(name="notifications.flush", queue=QUEUE_NOTIFY, time_limit=TASK_TIME_LIMIT_SECONDS)
def flush_notifications(self: Task[Any, Any]) -> None:
    """Send every notification that is ready, or whose retry delay is over."""
    send_ready_notifications()


def send_ready_notifications() -> None:
    """Send batches while this worker holds the sender lease; return at once if another does."""
    lock = lease_lock("notification-sender", SENDER_LEASE_SECONDS, app.conf.broker_url)
    while lock.acquire():
        try:
            turn_over = _send_batches(lock)
        finally:
            lock.release()
        if turn_over:
            flush_notifications.apply_async()
            return
        # A row that became ready after the last claim and before the release
        # was skipped by its own task, which found the lease taken. Check again.
        if not services.any_waiting():
            return


def _send_batches(lock: LeaseLock) -> bool:
    """Send batches until none is ready (return False) or this turn is over (return True)."""
    # One email backend for the whole turn; mailers.default builds a new one on each access.
    connection = mailers.default
    backend_limit = int(getattr(connection, "batch_limit", 1))
    limit = max(1, min(settings.EMAIL_BATCH_SIZE, backend_limit))
    deadline = time.monotonic() + SENDER_TURN_SECONDS
    while time.monotonic() < deadline:
        batch = services.claim_batch(limit)
        if batch is None:
            return False
        _send_batch(batch, connection, lock)
    return True


def _send_batch(batch: services.Batch, connection: BaseEmailBackend, lock: LeaseLock) -> None:
    if batch.attempts > settings.NOTIFICATION_MAX_ATTEMPTS:
        services.mark_failed(batch, f"gave up after {batch.attempts - 1} attempts")
        return
    messages = _build_messages(batch, connection)
    if not messages:
        return

    message_ids = _deliver_with_retries(batch, messages, connection, lock)
    if message_ids is None:
        return
    sent = services.mark_sent(batch, message_ids)
    logger.info(
        "notification.sent batch=%s emails=%s attempt=%s provider=%s",
        batch.id,
        sent,
        batch.attempts,
        settings.EMAIL_PROVIDER,
    )


def _deliver_with_retries(
    batch: services.Batch,
    messages: dict[uuid.UUID, EmailMessage],
    connection: BaseEmailBackend,
    lock: LeaseLock,
) -> dict[uuid.UUID, str] | None:
    """Send the batch, waiting out short delays in place; return the provider ids.

    Return None when the batch was failed, split or delayed instead.
    """
    rate_limited = 0
    while True:
        _wait_for_send_slot(lock)
        try:
            return _deliver(batch, messages, connection)
        except NotificationSendError as exc:
            error = exc

        if error.already_accepted:
            logger.warning(
                "notification.sent_earlier batch=%s emails=%s key=%s error=%s",
                batch.id,
                len(messages),
                batch.idempotency_key,
                error,
            )
            return dict.fromkeys(messages, "")
        if error.status == 429 and rate_limited < RATE_LIMITED_RETRIES_IN_PLACE:
            rate_limited += 1
            wait = error.retry_after if error.retry_after is not None else 1.0
            logger.warning(
                "notification.rate_limited batch=%s emails=%s countdown=%.1f",
                batch.id,
                len(messages),
                wait,
            )
            services.extend_lease(batch)
        else:
            delay = _handle_send_error(batch, error)
            if delay is None:
                return None
            wait = delay
            services.renew(batch)
        time.sleep(wait)
        lock.extend()


def _build_messages(
    batch: services.Batch, connection: BaseEmailBackend
) -> dict[uuid.UUID, EmailMessage]:
    """Render each email of the batch, and fail alone a row whose email cannot be built."""
    messages: dict[uuid.UUID, EmailMessage] = {}
    check_message = getattr(connection, "check_message", None)
    for notification in batch.notifications:
        try:
            message = build_message(notification)
            if check_message is not None:
                check_message(message)
            messages[notification.pk] = message
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            # It would fail the same way on every attempt, so it is recorded, not retried.
            logger.exception("notification.internal_error notification=%s", notification.pk)
            services.mark_failed(
                batch,
                f"the email could not be built: {type(exc).__name__}: {exc}",
                only=[notification.pk],
            )
    return messages


def _wait_for_send_slot(lock: LeaseLock) -> None:
    limiter = email_rate_limiter(settings.EMAIL_RATE_LIMIT_PER_SECOND, app.conf.broker_url)
    while (wait := limiter.acquire()) > 0:
        time.sleep(wait + random.uniform(0, 0.02))
        lock.extend()


def _deliver(
    batch: services.Batch, messages: dict[uuid.UUID, EmailMessage], connection: BaseEmailBackend
) -> dict[uuid.UUID, str]:
    """Send the batch's emails in one request when the backend can; return the provider ids."""
    send_batch = getattr(connection, "send_batch", None)
    try:
        if send_batch is not None and batch.uses_batch_endpoint:
            ids = send_batch(list(messages.values()), batch.idempotency_key)
            return dict(zip(messages, ids, strict=True))
        message_ids: dict[uuid.UUID, str] = {}
        for pk, message in messages.items():
            connection.send_messages([message])
            status = getattr(message, "anymail_status", None)
            message_ids[pk] = str(getattr(status, "message_id", None) or "")
        return message_ids
    except AnymailRequestsAPIError as exc:
        status = exc.status_code
        raise NotificationSendError(
            f"email provider error (HTTP {status}): {exc.describe_response()}"
            if status
            else f"email provider unreachable: {exc}",
            permanent=status is not None and status not in TRANSIENT_HTTP_STATUSES,
            status=status,
            retry_after=_retry_after(exc),
            error_name=_error_name(exc),
        ) from None
    except AnymailAPIError as exc:
        raise NotificationSendError(f"email provider error: {exc}", permanent=True) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise NotificationSendError(
            f"the SMTP server rejected the recipient: {exc}", permanent=True
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise NotificationSendError(
            f"sending failed: {type(exc).__name__}: {exc}", permanent=False
        ) from None


def _retry_after(exc: AnymailRequestsAPIError) -> float | None:
    response = exc.response
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _error_name(exc: AnymailRequestsAPIError) -> str:
    """Return the ``name`` field of a Resend error body, or "" when there is none."""
    if exc.response is None:
        return ""
    try:
        body = exc.response.json()
    except ValueError:
        return ""
    return str(body.get("name", "")) if isinstance(body, dict) else ""


def _handle_send_error(batch: services.Batch, exc: NotificationSendError) -> float | None:
    """Record a failed send; return the seconds to wait before sending again in place, or None."""
    size = len(batch.notifications)
    if exc.permanent and size > 1 and exc.status in REJECTED_CONTENT_STATUSES:
        # The provider sent none of the batch, so each email gets a request of its own.
        services.split(batch, str(exc))
        logger.warning("notification.batch_split batch=%s emails=%s error=%s", batch.id, size, exc)
        return None
    if exc.permanent or batch.attempts >= settings.NOTIFICATION_MAX_ATTEMPTS:
        services.mark_failed(batch, str(exc))
        logger.warning(
            "notification.failed batch=%s emails=%s attempts=%s error=%s",
            batch.id,
            size,
            batch.attempts,
            exc,
        )
        return None

    wait = backoff_seconds(batch.attempts, minimum=exc.retry_after)
    logger.warning(
        "notification.retry batch=%s emails=%s attempt=%s countdown=%.1f error=%s",
        batch.id,
        size,
        batch.attempts,
        wait,
        exc,
    )
    if wait <= RETRY_IN_PLACE_SECONDS:
        return wait
    # Keep the batch whole and claimed until its lease runs out, then send it again.
    services.delay(batch, str(exc), wait)
    flush_notifications.apply_async(countdown=wait + LEASE_MARGIN_SECONDS)
    return None
