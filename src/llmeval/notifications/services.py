"""State changes of notification rows, each one UPDATE filtered on the expected state.

Emails go out in batches. A batch is the set of rows claimed together under one
batch id, stored in ``claimed_by``, and its rows stay the same once claimed. A
batch whose send failed or whose worker died is sent again as the same rows
under the same idempotency key. The email provider then recognises the repeat
and returns its first response instead of sending twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from llmeval.evaluations.models import FINISHED_STATUSES
from llmeval.ids import uuid7
from llmeval.notifications.models import Notification, NotificationStatus

logger = logging.getLogger(__name__)

SEND_LEASE_SECONDS = 120
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Batch:
    """Notifications claimed together; ``id`` is stored in each row's ``claimed_by``."""

    id: str
    notifications: list[Notification]

    @property
    def size(self) -> int:
        """The number of rows when the batch was claimed, which rows deleted since do not change."""
        return max(notification.batch_size for notification in self.notifications)

    @property
    def uses_batch_endpoint(self) -> bool:
        return self.size > 1

    @property
    def idempotency_key(self) -> str:
        # A batch of one is sent alone under its notification's key, as every
        # email was before batches existed, so older claims are sent again safely.
        if not self.uses_batch_endpoint:
            return self.notifications[0].idempotency_key
        return f"llmeval-batch-{self.id}"

    @property
    def attempts(self) -> int:
        # The fewest, so a row left with attempts by the sender before batches
        # cannot use up the attempts of rows that join it in a new batch.
        return min(notification.attempts for notification in self.notifications)


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


def enqueue_flush() -> bool:
    """Publish a task that sends every waiting notification; return False if publishing failed."""
    from llmeval.notifications.tasks import flush_notifications

    try:
        flush_notifications.apply_async(
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        )
    except Exception as exc:
        logger.warning("notification.enqueue_failed flush error=%s", type(exc).__name__)
        return False
    return True


def _ready() -> Q:
    """Pending rows whose evaluation has finished: their email can go out now."""
    return Q(status=NotificationStatus.PENDING, evaluation__status__in=FINISHED_STATUSES)


def _stalled(now: object) -> Q:
    """Rows of a batch whose lease ran out: its worker died, or its retry delay is over."""
    return Q(status=NotificationStatus.SENDING, lease_expires_at__lt=now)


def is_waiting(notification_id: uuid.UUID) -> bool:
    """Return whether this notification is ready to send or belongs to a stalled batch."""
    now = timezone.now()
    return Notification.objects.filter(_ready() | _stalled(now), pk=notification_id).exists()


def any_waiting() -> bool:
    return Notification.objects.filter(_ready() | _stalled(timezone.now())).exists()


def claim_batch(limit: int) -> Batch | None:
    """Claim the next batch: a stalled one whole, otherwise up to ``limit`` ready rows.

    Each claim adds one to the rows' attempts and gives them a new lease. Two
    workers never claim the same row: the stalled batch is taken by one UPDATE
    filtered on its expired lease, and ready rows are locked with SKIP LOCKED.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=SEND_LEASE_SECONDS)
    stalled_id = (
        Notification.objects.filter(_stalled(now))
        .order_by("lease_expires_at")
        .values_list("claimed_by", flat=True)
        .first()
    )
    if stalled_id is not None:
        reclaimed = Notification.objects.filter(_stalled(now), claimed_by=stalled_id).update(
            attempts=F("attempts") + 1, lease_expires_at=lease
        )
        if reclaimed:
            return _load(stalled_id)

    batch_id = str(uuid7())
    with transaction.atomic():
        ids = list(
            Notification.objects.filter(_ready())
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return None
        Notification.objects.filter(pk__in=ids).update(
            status=NotificationStatus.SENDING,
            claimed_by=batch_id,
            batch_size=len(ids),
            attempts=F("attempts") + 1,
            lease_expires_at=lease,
        )
    return _load(batch_id)


def _load(batch_id: str) -> Batch | None:
    notifications = list(
        Notification.objects.filter(status=NotificationStatus.SENDING, claimed_by=batch_id)
        .select_related("evaluation")
        .order_by("id")
    )
    return Batch(batch_id, notifications) if notifications else None


def _in_batch(batch: Batch) -> QuerySet[Notification]:
    # NOTE: this matches the batch id, not the claim, so a worker that stalls
    # past the lease could still update rows that another worker has re-claimed.
    return Notification.objects.filter(status=NotificationStatus.SENDING, claimed_by=batch.id)


def renew(batch: Batch) -> None:
    """Count one more attempt of the batch and extend its lease, before sending it again."""
    _in_batch(batch).update(
        attempts=F("attempts") + 1,
        lease_expires_at=timezone.now() + timedelta(seconds=SEND_LEASE_SECONDS),
    )
    for notification in batch.notifications:
        notification.attempts += 1


def extend_lease(batch: Batch) -> None:
    """Extend the batch's lease without counting an attempt, as after a 429 response."""
    _in_batch(batch).update(lease_expires_at=timezone.now() + timedelta(seconds=SEND_LEASE_SECONDS))


def mark_sent(batch: Batch, message_ids: dict[uuid.UUID, str]) -> int:
    """Record the batch as sent, each row with its provider message id ("" when unknown)."""
    if not message_ids:
        return 0
    return _in_batch(batch).update(
        status=NotificationStatus.SENT,
        provider_message_id=Case(
            *(When(pk=pk, then=Value(message_id[:200])) for pk, message_id in message_ids.items()),
            default=Value(""),
        ),
        last_error="",
        lease_expires_at=None,
        sent_at=timezone.now(),
    )


def mark_failed(batch: Batch, error: str, only: list[uuid.UUID] | None = None) -> int:
    """Record the batch, or the rows ``only`` of it, as failed for good."""
    rows = _in_batch(batch)
    if only is not None:
        rows = rows.filter(pk__in=only)
    return rows.update(
        status=NotificationStatus.FAILED,
        last_error=error[:MAX_ERROR_CHARS],
        lease_expires_at=None,
    )


def delay(batch: Batch, error: str, seconds: float) -> None:
    """Keep the batch claimed and let its lease run out in ``seconds``, when it is sent again."""
    _in_batch(batch).update(
        last_error=error[:MAX_ERROR_CHARS],
        lease_expires_at=timezone.now() + timedelta(seconds=seconds),
    )


def split(batch: Batch, error: str) -> None:
    """Turn a batch the provider rejected as a whole into batches of one, due now.

    Used when the provider rejected the batch before sending any of it (a
    validation error), so each email can succeed or fail on its own.
    """
    now = timezone.now()
    for notification in batch.notifications:
        Notification.objects.filter(
            pk=notification.pk, status=NotificationStatus.SENDING, claimed_by=batch.id
        ).update(
            claimed_by=str(uuid7()),
            batch_size=1,
            last_error=error[:MAX_ERROR_CHARS],
            lease_expires_at=now,
        )
