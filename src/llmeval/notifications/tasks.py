"""Worker task: send the completion email of an evaluation, once."""

from __future__ import annotations

import logging
import random
import smtplib
import uuid
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRequestsAPIError
from celery import Task
from django.conf import settings

from llmeval.celery import app
from llmeval.celery_config import QUEUE_NOTIFY
from llmeval.notifications import services
from llmeval.notifications.emails import build_message
from llmeval.notifications.models import Notification
from llmeval.ratelimit import email_rate_limiter
from llmeval.tasking import backoff_seconds, project_task

logger = logging.getLogger(__name__)

TRANSIENT_HTTP_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class NotificationSendError(Exception):
    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@project_task(name="notifications.send", queue=QUEUE_NOTIFY, time_limit=120)
def send_notification(self: Task[Any, Any], notification_id: str) -> None:
    """Send the email for one notification row; skip a row already sent or being sent."""
    wait = email_rate_limiter(settings.EMAIL_RATE_LIMIT_PER_SECOND, app.conf.broker_url).acquire()
    if wait > 0:
        # Over the shared send rate: try again when a slot frees, without a claim.
        raise self.retry(countdown=wait + random.uniform(0, 0.25))

    notification = services.claim(uuid.UUID(notification_id), self.request.id or "")
    if notification is None:
        logger.info("notification.skip_unclaimable notification=%s", notification_id)
        return
    if notification.attempts > settings.NOTIFICATION_MAX_ATTEMPTS:
        services.mark_failed(notification, f"gave up after {notification.attempts - 1} attempts")
        return

    try:
        message_id = _send(notification)
    except NotificationSendError as exc:
        _handle_send_error(self, notification, exc)
        return
    except Exception as exc:
        # A message Django cannot build (an address it rejects, say) fails the
        # same way on every attempt, so it is recorded rather than retried.
        logger.exception("notification.internal_error notification=%s", notification.id)
        services.mark_failed(
            notification, f"the email could not be built: {type(exc).__name__}: {exc}"
        )
        return

    services.mark_sent(notification, message_id)
    logger.info(
        "notification.sent notification=%s evaluation=%s provider=%s message_id=%s",
        notification.id,
        notification.evaluation_id,
        settings.EMAIL_PROVIDER,
        message_id,
    )


def _send(notification: Notification) -> str:
    message = build_message(notification)
    try:
        message.send(fail_silently=False)
    except AnymailRequestsAPIError as exc:
        status = exc.status_code
        permanent = status is not None and status not in TRANSIENT_HTTP_STATUSES
        retry_after = _retry_after(exc)
        raise NotificationSendError(
            f"email provider error (HTTP {status}): {exc.describe_response()}"
            if status
            else f"email provider unreachable: {exc}",
            permanent=permanent,
            retry_after=retry_after,
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

    status = getattr(message, "anymail_status", None)
    return str(getattr(status, "message_id", None) or "")


def _retry_after(exc: AnymailRequestsAPIError) -> float | None:
    response = exc.response
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _handle_send_error(
    task: Task[Any, Any], notification: Notification, exc: NotificationSendError
) -> None:
    if exc.permanent or notification.attempts >= settings.NOTIFICATION_MAX_ATTEMPTS:
        services.mark_failed(notification, str(exc))
        logger.warning(
            "notification.failed notification=%s attempts=%s error=%s",
            notification.id,
            notification.attempts,
            exc,
        )
        return

    delay = backoff_seconds(notification.attempts, minimum=exc.retry_after)
    services.release_for_retry(notification, str(exc))
    logger.warning(
        "notification.retry notification=%s attempt=%s countdown=%.1f error=%s",
        notification.id,
        notification.attempts,
        delay,
        exc,
    )
    raise task.retry(countdown=delay, exc=exc)
