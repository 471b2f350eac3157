"""Worker tasks: generate an evaluation's response, and sweep rows whose task was lost."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Task
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from llmeval.celery import app
from llmeval.celery_config import QUEUE_MAINTENANCE, QUEUE_REMOTE
from llmeval.evaluations import services, sweeper
from llmeval.evaluations.models import Evaluation
from llmeval.providers.base import Generation, GenerationRequest
from llmeval.providers.concurrency import concurrency_limiter
from llmeval.providers.errors import ProviderError
from llmeval.providers.registry import ModelConfigError, get_provider, registry
from llmeval.scoring.base import Score, ScoringCase
from llmeval.scoring.runner import run_metrics
from llmeval.tasking import backoff_seconds, project_task
from llmeval.text import storable_text

logger = logging.getLogger(__name__)

# Retries of a task whose database was unreachable, before the sweeper takes over.
MAX_DATABASE_RETRIES = 20
# A concurrency slot outlives the provider timeout by this much before it expires.
SLOT_LEASE_MARGIN_SECONDS = 30


@project_task(
    name="evaluations.generate",
    queue=QUEUE_REMOTE,
    time_limit=settings.GENERATION_TIME_LIMIT_SECONDS,
)
def generate_evaluation(self: Task[Any, Any], evaluation_id: str, model: str | None = None) -> None:
    """Claim the row, call the model with no database connection held, store the outcome.

    ``model`` names the evaluation's model so a concurrency slot can be taken
    before the claim; without it (older messages) the task runs unlimited.
    """
    slot = _take_slot(self, model)
    try:
        _generate(self, uuid.UUID(evaluation_id))
    except (OperationalError, InterfaceError) as exc:
        retries = self.request.retries or 0
        if retries >= MAX_DATABASE_RETRIES:
            logger.error("evaluation.database_gave_up evaluation=%s error=%s", evaluation_id, exc)
            return
        delay = backoff_seconds(retries + 1)
        logger.warning(
            "evaluation.database_unavailable evaluation=%s countdown=%.1f error=%s",
            evaluation_id,
            delay,
            type(exc).__name__,
        )
        raise self.retry(countdown=delay, exc=exc) from None
    finally:
        if slot is not None:
            slot.release()


@dataclass(frozen=True, slots=True)
class _Slot:
    model: str
    token: str

    def release(self) -> None:
        concurrency_limiter(app.conf.broker_url).release(self.model, self.token)


def _take_slot(task: Task[Any, Any], model: str | None) -> _Slot | None:
    """Take one of the model's concurrency slots, or retry the task shortly when none is free."""
    if model is None:
        return None
    try:
        limit = registry().get(model).max_concurrency
    except ModelConfigError:
        return None
    if limit is None:
        return None

    token = uuid.uuid4().hex
    lease = settings.PROVIDER_TIMEOUT_SECONDS + SLOT_LEASE_MARGIN_SECONDS
    if concurrency_limiter(app.conf.broker_url).acquire(model, limit, token, lease):
        return _Slot(model, token)
    # Every slot is busy: wait a little without claiming the row, so no attempt is used.
    raise task.retry(countdown=random.uniform(0.05, 0.5), max_retries=None)


def _generate(task: Task[Any, Any], evaluation_id: uuid.UUID) -> None:
    evaluation = services.claim(evaluation_id, task.request.id or "")
    if evaluation is None:
        logger.info("evaluation.skip_unclaimable evaluation=%s", evaluation_id)
        return

    # Hand the connection back before the model call, which may take minutes.
    connection.close()
    try:
        generation = _call_model(evaluation)
        scores = _score(evaluation, generation)
    except ProviderError as exc:
        _handle_provider_error(task, evaluation, exc)
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

    services.complete(evaluation, generation, scores)
    logger.info(
        "evaluation.completed evaluation=%s model=%s attempt=%s latency_ms=%s output_tokens=%s",
        evaluation.id,
        evaluation.model,
        evaluation.attempts,
        generation.latency_ms,
        generation.output_tokens,
    )


def _call_model(evaluation: Evaluation) -> Generation:
    spec = registry().get(evaluation.model)
    request = GenerationRequest(
        prompt=evaluation.input_prompt,
        system_prompt=evaluation.system_prompt,
        max_new_tokens=evaluation.max_new_tokens,
        temperature=evaluation.temperature,
        seed=evaluation.seed,
    )
    return get_provider(spec).generate(request)


def _score(evaluation: Evaluation, generation: Generation) -> list[Score]:
    if not evaluation.metrics:
        return []
    case = ScoringCase(
        prompt=evaluation.input_prompt,
        response=storable_text(generation.text),
        expected_output=evaluation.expected_output,
        latency_ms=generation.latency_ms,
        output_tokens=generation.output_tokens,
    )
    return run_metrics(evaluation.metrics, case)


def _handle_provider_error(
    task: Task[Any, Any], evaluation: Evaluation, exc: ProviderError
) -> None:
    attempts_left = evaluation.attempts < settings.GENERATION_MAX_ATTEMPTS
    if exc.permanent or not attempts_left:
        reason = str(exc)
        if not exc.permanent:
            reason = f"{exc} (gave up after {evaluation.attempts} attempts)"
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
    raise task.retry(countdown=delay, queue=registry().get(evaluation.model).queue)


@project_task(name="evaluations.sweep", queue=QUEUE_MAINTENANCE, time_limit=300)
def sweep(self: Task[Any, Any]) -> None:
    """Re-enqueue work whose message was lost and fail work that used every attempt."""
    report = sweeper.sweep()
    if report.any():
        logger.info(
            "sweep.done requeued=%s failed=%s notifications_requeued=%s",
            report.requeued,
            report.failed,
            report.notifications_requeued,
        )
