"""The one decorator every project task uses, so queue, retries and limits are set in one place."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from celery import Task

from llmeval.celery import app
from llmeval.celery_config import MAX_RETRY_DELAY_SECONDS

# Default queue of each project task. A caller may still pass ``queue=`` to
# apply_async, as generation does to pick the local or remote queue.
_ROUTES: dict[str, dict[str, str]] = {}
app.conf.task_routes = (_ROUTES,)


def project_task(
    *,
    name: str,
    queue: str,
    time_limit: int | None = None,
) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """Register a task that takes ids, is acknowledged late and stores no result.

    Retries are decided by the task body (it calls ``self.retry`` with a
    countdown), never by Celery's ``autoretry_for``, so each retry decision sits
    beside the error that caused it.
    """
    _ROUTES[name] = {"queue": queue}
    options: dict[str, Any] = {
        "bind": True,
        "name": name,
        "ignore_result": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "max_retries": None,
    }
    if time_limit is not None:
        options["time_limit"] = time_limit
        options["soft_time_limit"] = max(1, time_limit - 10)

    def decorator(function: Callable[..., Any]) -> Task[Any, Any]:
        task: Task[Any, Any] = app.task(**options)(function)
        return task

    return decorator


def backoff_seconds(attempt: int, *, base: float = 2.0, minimum: float | None = None) -> float:
    """Return a capped exponential backoff with full jitter, at least ``minimum``."""
    ceiling = min(MAX_RETRY_DELAY_SECONDS, base * 2 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if minimum is not None:
        delay = max(delay, minimum)
    return min(delay, MAX_RETRY_DELAY_SECONDS)
