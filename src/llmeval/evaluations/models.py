"""The evaluation row: one prompt, its parameters, and the outcome of generating an answer."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from llmeval.ids import uuid7


class Status(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


FINISHED_STATUSES = (Status.COMPLETED, Status.FAILED)

STATUS_MESSAGES = {
    Status.PENDING: "Evaluation request submitted successfully",
    Status.RUNNING: "Evaluation is running",
    Status.COMPLETED: "Evaluation completed",
    Status.FAILED: "Evaluation failed",
}


class Evaluation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    # None for evaluations submitted anonymously (ALLOW_ANONYMOUS_ACCESS).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="evaluations",
    )
    input_prompt = models.TextField()
    system_prompt = models.TextField(blank=True, default="")
    model = models.CharField(max_length=200)
    max_new_tokens = models.PositiveIntegerField()
    temperature = models.FloatField()
    seed = models.BigIntegerField(null=True, blank=True)

    # Scoring: the expected output, the metric specs run after generation
    # (MetricSpec.to_dict), their results (Score.to_dict), and whether every
    # threshold was met (None when no metric has a threshold).
    expected_output = models.TextField(null=True, blank=True)  # noqa: DJ001
    metrics = models.JSONField(default=list, blank=True)
    scores = models.JSONField(default=list, blank=True)
    passed = models.BooleanField(null=True, blank=True)

    response = models.TextField(blank=True, default="")
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    provider_request_id = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")

    # attempts counts claims by a worker. lease_expires_at is the deadline of the
    # current claim: a row still running after it belongs to a lost worker.
    # claimed_by is the Celery task id of the claim: a message redelivered after
    # its worker died carries the same id and may take the row over at once.
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    queued_at = models.DateTimeField(auto_now_add=True)

    # A client's Idempotency-Key (unique per owner) and a hash of the body it came with.
    # NULL, not "", means "no key", so the unique constraint skips those rows.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["-id"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                nulls_distinct=False,
                name="evaluation_owner_idempotency_key",
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            # The list endpoint filters on status and pages by id; the sweeper
            # scans pending and running rows by age.
            models.Index(fields=["status", "-id"], name="evaluation_status_id"),
            models.Index(fields=["owner", "-id"], name="evaluation_owner_id"),
            models.Index(fields=["owner", "status", "-id"], name="evaluation_owner_status_id"),
            models.Index(
                fields=["status", "queued_at"],
                name="evaluation_unfinished",
                condition=models.Q(status__in=["pending", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Evaluation {self.id} ({self.status})"

    @property
    def message(self) -> str:
        return STATUS_MESSAGES[Status(self.status)]
