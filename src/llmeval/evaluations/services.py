"""State changes of an evaluation row: submit, claim, complete, fail, requeue.

Each change is one UPDATE filtered on the state it expects, so two workers
that receive the same task cannot both act on a row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from llmeval.evaluations.models import FINISHED_STATUSES, Evaluation, Status
from llmeval.notifications.models import Notification
from llmeval.providers.base import Generation
from llmeval.scoring.base import Score
from llmeval.scoring.runner import overall_passed
from llmeval.text import storable_text

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000
LEASE_MARGIN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Submission:
    input_prompt: str
    model: str
    max_new_tokens: int
    temperature: float
    queue: str
    system_prompt: str = ""
    seed: int | None = None
    recipient_email: str = ""
    idempotency_key: str | None = None
    request_fingerprint: str = ""
    owner_id: int | None = None
    expected_output: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request body."""


def submit(submission: Submission) -> tuple[Evaluation, bool]:
    """Store a new evaluation and enqueue it after commit; return it and whether it is new.

    With an idempotency key already used for the same body, the original
    evaluation is returned and nothing is stored or enqueued.
    """
    if submission.idempotency_key:
        existing = _by_idempotency_key(submission)
        if existing is not None:
            return _replay(existing, submission), False

    try:
        evaluation = _insert(submission)
    except IntegrityError:
        # Two requests with the same new key raced; the other one inserted first.
        if not submission.idempotency_key:
            raise
        existing = _by_idempotency_key(submission)
        if existing is None:
            raise
        return _replay(existing, submission), False

    logger.info("evaluation.submitted evaluation=%s model=%s", evaluation.id, submission.model)
    return evaluation, True


def _by_idempotency_key(submission: Submission) -> Evaluation | None:
    return Evaluation.objects.filter(
        owner_id=submission.owner_id, idempotency_key=submission.idempotency_key
    ).first()


def _insert(submission: Submission) -> Evaluation:
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            owner_id=submission.owner_id,
            input_prompt=submission.input_prompt,
            system_prompt=submission.system_prompt,
            model=submission.model,
            max_new_tokens=submission.max_new_tokens,
            temperature=submission.temperature,
            seed=submission.seed,
            idempotency_key=submission.idempotency_key,
            request_fingerprint=submission.request_fingerprint,
            expected_output=submission.expected_output,
            metrics=submission.metrics,
        )
        if submission.recipient_email:
            Notification.objects.create(evaluation=evaluation, recipient=submission.recipient_email)
        transaction.on_commit(
            lambda: enqueue_generation(evaluation.id, submission.queue, submission.model)
        )
    return evaluation


def _replay(existing: Evaluation, submission: Submission) -> Evaluation:
    if existing.request_fingerprint != submission.request_fingerprint:
        raise IdempotencyConflict(
            f"Idempotency-Key {submission.idempotency_key!r} was already used with a "
            "different request body; send a new key for a new request."
        )
    return existing


def enqueue_generation(evaluation_id: uuid.UUID, queue: str, model: str) -> bool:
    """Publish the generation task; return False when the broker cannot be reached.

    A failed publish loses nothing: the row stays pending and the sweeper
    enqueues it again after the grace period.
    """
    from llmeval.evaluations.tasks import generate_evaluation

    try:
        generate_evaluation.apply_async(
            args=(str(evaluation_id),),
            # The model name lets the task take a concurrency slot before it claims the row.
            kwargs={"model": model},
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        )
    except Exception as exc:
        # kombu raises OperationalError, redis-py ConnectionError or OSError
        # depending on where the connection fails; all mean "broker unreachable".
        logger.warning(
            "evaluation.enqueue_failed evaluation=%s queue=%s error=%s",
            evaluation_id,
            queue,
            type(exc).__name__,
        )
        return False
    return True


def claim(evaluation_id: uuid.UUID, task_id: str) -> Evaluation | None:
    """Move a claimable row to running for this task; return it, or None if not claimable.

    A row is claimable when it is pending, when its running claim has expired, or
    when this same task id has claimed it. Celery redelivers the message of a dead
    worker under the same task id, so such a claim belongs to a dead process.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.GENERATION_TIME_LIMIT_SECONDS + LEASE_MARGIN_SECONDS)
    updated = (
        Evaluation.objects.filter(_claimable(now, task_id), pk=evaluation_id)
        .filter(attempts__lt=settings.GENERATION_MAX_ATTEMPTS)
        .update(
            status=Status.RUNNING,
            attempts=F("attempts") + 1,
            lease_expires_at=lease,
            claimed_by=task_id,
            started_at=Coalesce("started_at", Value(now)),
        )
    )
    if updated == 1:
        return Evaluation.objects.select_related("notification").get(pk=evaluation_id)

    fail_exhausted(Evaluation.objects.filter(_claimable(now, task_id), pk=evaluation_id))
    return None


def fail_exhausted(queryset: QuerySet[Evaluation]) -> int:
    """Fail the rows of ``queryset`` that have used every attempt; return how many."""
    exhausted = queryset.filter(
        status=Status.RUNNING, attempts__gte=settings.GENERATION_MAX_ATTEMPTS
    )
    failed = 0
    for evaluation in exhausted.select_related("notification"):
        with transaction.atomic():
            updated = Evaluation.objects.filter(
                pk=evaluation.pk, status=Status.RUNNING, attempts=evaluation.attempts
            ).update(
                status=Status.FAILED,
                error=(
                    f"the worker was lost during each of {evaluation.attempts} attempts "
                    "(killed, out of memory or past its time limit); giving up"
                ),
                lease_expires_at=None,
                completed_at=timezone.now(),
            )
            if updated:
                _notify_after_commit(evaluation)
                failed += 1
    return failed


def fail_unregistered(evaluation_id: uuid.UUID, model_name: str) -> None:
    """Fail an unfinished row whose model was removed from the models file."""
    with transaction.atomic():
        evaluation = (
            Evaluation.objects.select_for_update()
            .filter(pk=evaluation_id)
            .exclude(status__in=FINISHED_STATUSES)
            .first()
        )
        if evaluation is None:
            return
        evaluation.status = Status.FAILED
        evaluation.error = f"model {model_name!r} is no longer registered; resubmit with another"
        evaluation.lease_expires_at = None
        evaluation.completed_at = timezone.now()
        evaluation.save(update_fields=["status", "error", "lease_expires_at", "completed_at"])
        _notify_after_commit(evaluation)


def _claimable(now: datetime, task_id: str) -> Q:
    return (
        Q(status=Status.PENDING)
        | Q(status=Status.RUNNING, lease_expires_at__lt=now)
        | Q(status=Status.RUNNING, claimed_by=task_id)
    )


def complete(evaluation: Evaluation, generation: Generation, scores: Sequence[Score] = ()) -> bool:
    """Store the generation and its scores, mark the row completed, enqueue its email."""
    now = timezone.now()
    seed = evaluation.seed if evaluation.seed is not None else generation.seed
    with transaction.atomic():
        updated = _owned(evaluation).update(
            status=Status.COMPLETED,
            seed=seed,
            response=storable_text(generation.text),
            input_tokens=generation.input_tokens,
            output_tokens=generation.output_tokens,
            latency_ms=generation.latency_ms,
            finish_reason=generation.finish_reason[:32],
            provider_request_id=generation.request_id[:200],
            scores=[_storable_score(score) for score in scores],
            passed=overall_passed(scores),
            error="",
            lease_expires_at=None,
            completed_at=now,
        )
        if updated:
            _notify_after_commit(evaluation)
    return updated == 1


def _storable_score(score: Score) -> dict[str, Any]:
    """Return the score with every string cleaned, since jsonb rejects NUL and lone surrogates."""
    return cast(dict[str, Any], _storable_json(score.to_dict()))


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): _storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable_json(item) for item in value]
    return value


def fail(evaluation: Evaluation, error: str) -> bool:
    """Mark the row failed with a readable error; enqueue its email after commit."""
    with transaction.atomic():
        updated = _owned(evaluation).update(
            status=Status.FAILED,
            error=storable_text(error)[:MAX_ERROR_CHARS],
            lease_expires_at=None,
            completed_at=timezone.now(),
        )
        if updated:
            _notify_after_commit(evaluation)
    return updated == 1


def release_for_retry(evaluation: Evaluation, error: str) -> bool:
    """Put a running row back to pending after a transient error, keeping the error."""
    updated = _owned(evaluation).update(
        status=Status.PENDING,
        error=storable_text(error)[:MAX_ERROR_CHARS],
        lease_expires_at=None,
        queued_at=timezone.now(),
    )
    return updated == 1


def release_unstarted(evaluation: Evaluation) -> bool:
    """Put a claimed row back to pending and take back its attempt, as the model was not called."""
    changes: dict[str, Any] = {
        "status": Status.PENDING,
        "attempts": F("attempts") - 1,
        "lease_expires_at": None,
        "queued_at": timezone.now(),
    }
    if evaluation.attempts == 1:
        # This claim set started_at, and no attempt has started.
        changes["started_at"] = None
    updated = _owned(evaluation).update(**changes)
    return updated == 1


def _owned(evaluation: Evaluation) -> QuerySet[Evaluation]:
    """Filter on this worker's claim, so a stale worker never overwrites a newer attempt."""
    return Evaluation.objects.filter(
        pk=evaluation.pk, status=Status.RUNNING, attempts=evaluation.attempts
    )


def _notify_after_commit(evaluation: Evaluation) -> None:
    notification = getattr(evaluation, "notification", None)
    if notification is None:
        return

    from llmeval.notifications.services import enqueue_notification

    transaction.on_commit(lambda: enqueue_notification(notification.id))
