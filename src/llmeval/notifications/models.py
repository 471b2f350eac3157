"""One email notification per evaluation, with the outcome of sending it."""

from __future__ import annotations

from django.db import models

from llmeval.evaluations.models import Evaluation
from llmeval.ids import uuid7


class NotificationStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Notification(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # One-to-one: a duplicated task can never create a second email for an evaluation.
    evaluation = models.OneToOneField(
        Evaluation, on_delete=models.CASCADE, related_name="notification"
    )
    recipient = models.EmailField(max_length=254)
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    # Rows in the batch when it was claimed, which decides how it is sent again:
    # through the batch endpoint above 1. 0 for a row claimed before batches.
    batch_size = models.PositiveSmallIntegerField(default=0)
    provider_message_id = models.CharField(max_length=200, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Senders and the sweeper look only at unsent rows: keep them in a small index.
            models.Index(
                fields=["status", "lease_expires_at"],
                name="notification_unsent_idx",
                condition=models.Q(status__in=["pending", "sending"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Notification {self.id} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """The key sent to the email provider, the same for every attempt of this email."""
        return f"llmeval-notification-{self.id}"
