"""State changes of a notification row, each one UPDATE filtered on the expected state."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from llmeval.notifications.models import Notification, NotificationStatus

logger = logging.getLogger(__name__)

SEND_LEASE_SECONDS = 120
MAX_ERROR_CHARS = 2000


def enqueue_notification(notification_id: uuid.UUID) -> bool:
    """Publish the send task; the sweeper retries a notification whose publish failed."""
    from llmeval.notifications.tasks import send_notification

    try:
        send_notification.apply_async(
            args=(str(notification_id),),
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        )
    except Exception as exc:
        logger.warning(
            "notification.enqueue_failed notification=%s error=%s",
            notification_id,
            type(exc).__name__,
        )
        return False
    return True


def claim(notification_id: uuid.UUID, task_id: str) -> Notification | None:
    """Move a claimable notification to sending for this task; None if not claimable.

    Claimable means pending, sending with an expired lease, or sending under this
    same task id (a message redelivered after its worker died).
    """
    now = timezone.now()
    claimable = (
        Q(status=NotificationStatus.PENDING)
        | Q(status=NotificationStatus.SENDING, lease_expires_at__lt=now)
        | Q(status=NotificationStatus.SENDING, claimed_by=task_id)
    )
    updated = Notification.objects.filter(claimable, pk=notification_id).update(
        status=NotificationStatus.SENDING,
        attempts=F("attempts") + 1,
        claimed_by=task_id,
        lease_expires_at=now + timedelta(seconds=SEND_LEASE_SECONDS),
    )
    if updated != 1:
        return None
    return Notification.objects.select_related("evaluation").get(pk=notification_id)


def mark_sent(notification: Notification, message_id: str) -> None:
    Notification.objects.filter(pk=notification.pk, status=NotificationStatus.SENDING).update(
        status=NotificationStatus.SENT,
        provider_message_id=message_id[:200],
        last_error="",
        lease_expires_at=None,
        sent_at=timezone.now(),
    )


def mark_failed(notification: Notification, error: str) -> None:
    Notification.objects.filter(pk=notification.pk, status=NotificationStatus.SENDING).update(
        status=NotificationStatus.FAILED,
        last_error=error[:MAX_ERROR_CHARS],
        lease_expires_at=None,
    )


def release_for_retry(notification: Notification, error: str) -> None:
    Notification.objects.filter(pk=notification.pk, status=NotificationStatus.SENDING).update(
        status=NotificationStatus.PENDING,
        last_error=error[:MAX_ERROR_CHARS],
        lease_expires_at=None,
    )
