"""Worker tasks: generate an evaluation's response, and sweep rows whose task was lost."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from celery import Task
from celery.signals import celeryd_after_setup
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
# How long a thread with a claimed row waits for a concurrency slot before it
# puts the row back to pending and retries the task.
SLOT_WAIT_SECONDS = 10.0


@project_task(
    name="evaluations.generate",
    queue=QUEUE_REMOTE,
    time_limit=settings.GENERATION_TIME_LIMIT_SECONDS,
)
def generate_evaluation(self: Task[Any, Any], evaluation_id: str, model: str | None = None) -> None:
    """Claim the row, call the model with no database connection held, store the outcome.

    ``model`` names the evaluation's model so its concurrency limit is known
    before the claim; without it (older messages) the task runs unlimited.
    """
    try:
        _generate(self, uuid.UUID(evaluation_id), _concurrency_limit(model))
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


@dataclass(frozen=True, slots=True)
class _Limit:
    model: str
    max_concurrency: int


@dataclass(frozen=True, slots=True)
class _Slot:
    limit: _Limit
    token: str

    def release(self) -> None:
        try:
            concurrency_limiter(app.conf.broker_url).release(
                self.limit.model, self.token, self.limit.max_concurrency
            )
        except redis.RedisError as exc:
            # The generation is stored anyway, and the slot expires after its lease.
            logger.warning(
                "evaluation.slot_release_failed model=%s error=%s",
                self.limit.model,
                type(exc).__name__,
            )


def _concurrency_limit(model: str | None) -> _Limit | None:
    if model is None:
        return None
    try:
        max_concurrency = registry().get(model).max_concurrency
    except ModelConfigError:
        return None
    return None if max_concurrency is None else _Limit(model, max_concurrency)


def _generate(task: Task[Any, Any], evaluation_id: uuid.UUID, limit: _Limit | None) -> None:
    if limit is None:
        evaluation = _claim(task, evaluation_id)
        if evaluation is not None:
            _run(task, evaluation, None)
        return

    # The row is claimed before a slot is taken, so a slot is held only during
    # the model call and a thread with a claimed row is ready when one frees.
    limiter = concurrency_limiter(app.conf.broker_url)
    with limiter.waiting_place(limit.model, limit.max_concurrency) as admitted:
        if not admitted:
            # This process already has as many threads waiting for the model's
            # slots as the model has slots, so retry shortly without claiming the row.
            raise task.retry(countdown=random.uniform(0.05, 0.5), max_retries=None)
        evaluation = _claim(task, evaluation_id)
        if evaluation is None:
            return
        slot = _take_slot(limit, evaluation.id)

    if slot is None:
        # Give the attempt back, as the model was not called.
        services.release_unstarted(evaluation)
        logger.info(
            "evaluation.no_free_slot evaluation=%s model=%s waited_s=%s",
            evaluation.id,
            limit.model,
            SLOT_WAIT_SECONDS,
        )
        raise task.retry(countdown=random.uniform(0.05, 0.5), max_retries=None)
    _run(task, evaluation, slot)


def _claim(task: Task[Any, Any], evaluation_id: uuid.UUID) -> Evaluation | None:
    evaluation = services.claim(evaluation_id, task.request.id or "")
    if evaluation is None:
        logger.info("evaluation.skip_unclaimable evaluation=%s", evaluation_id)
        return None
    # Hand the connection back before waiting for a slot and calling the model,
    # which may take minutes.
    connection.close()
    return evaluation


def _take_slot(limit: _Limit, evaluation_id: uuid.UUID) -> _Slot | None:
    """Take one of the model's concurrency slots, waiting up to SLOT_WAIT_SECONDS for one."""
    token = uuid.uuid4().hex
    lease = settings.PROVIDER_TIMEOUT_SECONDS + SLOT_LEASE_MARGIN_SECONDS
    limiter = concurrency_limiter(app.conf.broker_url)
    try:
        acquired = limiter.acquire(
            limit.model, limit.max_concurrency, token, lease, wait_seconds=SLOT_WAIT_SECONDS
        )
    except redis.RedisError as exc:
        logger.warning(
            "evaluation.slot_unavailable evaluation=%s model=%s error=%s",
            evaluation_id,
            limit.model,
            type(exc).__name__,
        )
        return None
    return _Slot(limit, token) if acquired else None


def _run(task: Task[Any, Any], evaluation: Evaluation, slot: _Slot | None) -> None:
    try:
        try:
            generation = _call_model(evaluation)
        finally:
            if slot is not None:
                slot.release()
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


@celeryd_after_setup.connect
def build_remote_providers(sender: str, instance: Any, **kwargs: Any) -> None:
    """Build the remote models' providers when a worker of the remote queue starts.

    The first call of a process otherwise imports huggingface_hub and builds
    the client under the provider lock, which delayed its first calls by about
    0.35 to 0.8 s each (bench/bench_end_to_end.py, 2 workers of 48 threads).
    """
    if QUEUE_REMOTE not in instance.app.amqp.queues.consume_from:
        return
    try:
        specs = [spec for spec in registry().models.values() if spec.queue == QUEUE_REMOTE]
        for spec in specs:
            get_provider(spec)
    except Exception as exc:
        # The first task builds the provider again and reports the error on its row.
        logger.warning("worker.provider_warm_up_failed worker=%s error=%s", sender, exc)


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
