"""The periodic sweeper: the safety net for messages lost by the broker or by a dead worker.

Rows are the source of truth. A row still pending after the grace period has
lost its message, because the broker was down at submission or dropped it. A
row still running after its lease belongs to a worker that died. The sweeper
enqueues both again, and the claim in the task makes a duplicate harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from llmeval.evaluations import services
from llmeval.evaluations.models import FINISHED_STATUSES, Evaluation, Status
from llmeval.notifications.models import Notification, NotificationStatus
from llmeval.notifications.services import enqueue_flush
from llmeval.providers.registry import ModelConfigError, registry

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class SweepReport:
    requeued: int = 0
    failed: int = 0
    notifications_requeued: int = 0

    def any(self) -> bool:
        return bool(self.requeued or self.failed or self.notifications_requeued)


def sweep() -> SweepReport:
    now = timezone.now()
    abandoned = Evaluation.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now)
    failed = services.fail_exhausted(abandoned)
    requeued = _requeue_evaluations(now)
    notifications = _requeue_notifications(now)
    return SweepReport(requeued=requeued, failed=failed, notifications_requeued=notifications)


def _requeue_evaluations(now: datetime) -> int:
    grace = timedelta(seconds=settings.PENDING_GRACE_SECONDS)
    lost = Q(status=Status.PENDING, queued_at__lt=now - grace) | Q(
        status=Status.RUNNING,
        lease_expires_at__lt=now,
        attempts__lt=settings.GENERATION_MAX_ATTEMPTS,
    )
    rows = list(Evaluation.objects.filter(lost).values_list("id", "model")[:BATCH_SIZE])

    requeued = 0
    for evaluation_id, model_name in rows:
        try:
            queue = registry().get(model_name).queue
        except ModelConfigError:
            services.fail_unregistered(evaluation_id, model_name)
            continue
        # Restart the grace period so the next sweep does not enqueue it again.
        Evaluation.objects.filter(pk=evaluation_id, status=Status.PENDING).update(queued_at=now)
        if services.enqueue_generation(evaluation_id, queue, model_name):
            requeued += 1
    return requeued


def _requeue_notifications(now: datetime) -> int:
    """Count the notifications that were not sent in time and start one sender for them all."""
    grace = timedelta(seconds=settings.PENDING_GRACE_SECONDS)
    lost = Q(
        status=NotificationStatus.PENDING,
        evaluation__status__in=FINISHED_STATUSES,
        evaluation__completed_at__lt=now - grace,
    ) | Q(status=NotificationStatus.SENDING, lease_expires_at__lt=now)
    count = Notification.objects.filter(lost)[:BATCH_SIZE].count()
    if count and not enqueue_flush():
        return 0
    return count
