"""Celery settings derived from the Django settings (imported by settings.py)."""

from __future__ import annotations

from typing import Any

QUEUE_LOCAL = "generate.local"
QUEUE_REMOTE = "generate.remote"
QUEUE_NOTIFY = "notify"
QUEUE_MAINTENANCE = "maintenance"

# Maximum countdown of a retry, in seconds.
MAX_RETRY_DELAY_SECONDS = 300


def celery_settings(
    *,
    broker_url: str,
    transport_options: dict[str, Any],
    time_limit: int,
    sweeper_interval: int,
) -> dict[str, Any]:
    options = dict(transport_options)
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        # Redis redelivers an unacknowledged message after the visibility timeout.
        # It must exceed the longest task run plus the longest retry countdown,
        # or a slow task would be delivered twice.
        options.setdefault("visibility_timeout", 2 * time_limit + MAX_RETRY_DELAY_SECONDS)
        options.setdefault("socket_connect_timeout", 5)
        options.setdefault("socket_timeout", 30)

    return {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_BROKER_TRANSPORT_OPTIONS": options,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        "CELERY_BROKER_CONNECTION_MAX_RETRIES": None,
        "CELERY_TASK_IGNORE_RESULT": True,
        "CELERY_RESULT_BACKEND": None,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_TASK_DEFAULT_QUEUE": QUEUE_MAINTENANCE,
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        "CELERY_WORKER_SEND_TASK_EVENTS": False,
        "CELERY_BEAT_SCHEDULE": {
            "sweep-evaluations": {
                "task": "evaluations.sweep",
                "schedule": float(sweeper_interval),
                "options": {"queue": QUEUE_MAINTENANCE, "expires": float(sweeper_interval)},
            },
        },
    }
