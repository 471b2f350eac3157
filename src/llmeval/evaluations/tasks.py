"""Worker tasks: generate an evaluation's answer, and sweep rows whose task was lost."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from celery import Task
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from llmeval.celery_config import QUEUE_MAINTENANCE, QUEUE_REMOTE
from llmeval.evaluations import services
from llmeval.evaluations.models import Evaluation, Status
from llmeval.providers.base import GenerationRequest
from llmeval.providers.errors import ProviderError
from llmeval.providers.registry import ModelConfigError, get_provider, registry
from llmeval.tasking import backoff_seconds, project_task

logger = logging.getLogger(__name__)


@project_task(
    name="evaluations.generate",
    queue=QUEUE_REMOTE,
    time_limit=settings.GENERATION_TIME_LIMIT_SECONDS,
)
def generate_evaluation(self: Task[Any, Any], evaluation_id: str) -> None:
    """Claim the row, call the model with no database connection held, store the outcome."""
    evaluation = services.claim(uuid.UUID(evaluation_id))
    if evaluation is None:
        logger.info("evaluation.skip_unclaimable evaluation=%s", evaluation_id)
        return

    # Hand the connection back before the model call, which may take minutes.
    connection.close()

    try:
        spec = registry().get(evaluation.model)
        generation = get_provider(spec).generate(_request_for(evaluation))
    except ProviderError as exc:
        _handle_provider_error(self, evaluation, exc)
        return
    except ModelConfigError as exc:
        services.fail(evaluation, str(exc))
        return
    except Exception as exc:
        logger.exception("evaluation.internal_error evaluation=%s", evaluation.id)
        services.fail(
            evaluation,
            f"internal error ({type(exc).__name__}) while generating; "
            f"the worker log has details under evaluation {evaluation.id}",
        )
        return
    finally:
        close_old_connections()

    services.complete(evaluation, generation)
    logger.info(
        "evaluation.completed evaluation=%s model=%s latency_ms=%s output_tokens=%s",
        evaluation.id,
        evaluation.model,
        generation.latency_ms,
        generation.output_tokens,
    )


def _request_for(evaluation: Evaluation) -> GenerationRequest:
    return GenerationRequest(
        prompt=evaluation.input_prompt,
        system_prompt=evaluation.system_prompt,
        max_new_tokens=evaluation.max_new_tokens,
        temperature=evaluation.temperature,
        seed=evaluation.seed,
    )


def _handle_provider_error(
    task: Task[Any, Any], evaluation: Evaluation, exc: ProviderError
) -> None:
    attempts_left = evaluation.attempts < settings.GENERATION_MAX_ATTEMPTS
    if exc.permanent or not attempts_left:
        reason = (
            str(exc) if exc.permanent else f"{exc} (gave up after {evaluation.attempts} attempts)"
        )
        services.fail(evaluation, reason)
        logger.warning(
            "evaluation.failed evaluation=%s attempts=%s permanent=%s error=%s",
            evaluation.id,
            evaluation.attempts,
            exc.permanent,
            exc,
        )
        return

    delay = backoff_seconds(evaluation.attempts, minimum=exc.retry_after)
    services.release_for_retry(evaluation, str(exc))
    logger.warning(
        "evaluation.retry evaluation=%s attempt=%s countdown=%.1f error=%s",
        evaluation.id,
        evaluation.attempts,
        delay,
        exc,
    )
    spec = registry().get(evaluation.model)
    raise task.retry(countdown=delay, queue=spec.queue, exc=exc)


@project_task(name="evaluations.sweep", queue=QUEUE_MAINTENANCE, time_limit=300)
def sweep_evaluations(self: Task[Any, Any]) -> None:
    """Re-enqueue rows whose message was lost and recover rows abandoned by a lost worker."""
    now = timezone.now()
    requeued = 0

    abandoned = Evaluation.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now)
    exhausted = abandoned.filter(attempts__gte=settings.GENERATION_MAX_ATTEMPTS)
    for evaluation in exhausted.select_related("notification"):
        services.fail(
            evaluation,
            f"the worker was lost during each of {evaluation.attempts} attempts; giving up",
        )

    grace = timedelta(seconds=settings.PENDING_GRACE_SECONDS)
    stale_pending = Evaluation.objects.filter(status=Status.PENDING, queued_at__lt=now - grace)
    candidates = list(stale_pending.values_list("id", "model")[:1000]) + list(
        abandoned.filter(attempts__lt=settings.GENERATION_MAX_ATTEMPTS).values_list("id", "model")[
            :1000
        ]
    )

    for evaluation_id, model_name in candidates:
        Evaluation.objects.filter(pk=evaluation_id, status=Status.PENDING).update(queued_at=now)
        try:
            queue = registry().get(model_name).queue
        except ModelConfigError:
            Evaluation.objects.filter(pk=evaluation_id).exclude(
                status__in=[Status.COMPLETED, Status.FAILED]
            ).update(
                status=Status.FAILED,
                error=f"model {model_name!r} is no longer registered",
                completed_at=now,
            )
            continue
        if services.enqueue_generation(evaluation_id, queue):
            requeued += 1

    if requeued or candidates:
        logger.info("evaluation.sweep requeued=%s candidates=%s", requeued, len(candidates))
