"""Fault injection on real processes: a killed worker, Redis restarted or down, PostgreSQL away.

The stack here is the production shape: gunicorn serving the API, a prefork
worker for generation, a threads worker for email and maintenance, and beat
running the sweeper every second. It has a private redis-server, which the
tests stop and restart, and reaches PostgreSQL through a TCP proxy that the
tests cut. Every test checks the end state of every evaluation, the number of
model calls and the number of emails.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from llmeval.evaluations.models import Evaluation
from llmeval.notifications.models import Notification
from tests.conftest import database_url
from tests.fakes.http import RecordedRequest, RecordingServer, Reply
from tests.fakes.providers import chat_completion
from tests.processes import (
    Process,
    RedisServer,
    TcpProxy,
    free_port,
    http_json,
    python_module,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODEL = "google/gemma-2-2b-it"


@dataclass
class Stack:
    api_url: str
    redis: RedisServer
    postgres: TcpProxy
    generate_worker: Process
    outbox: Path
    log_dir: Path
    processes: list[Process]

    def submit(self, prompt: str, **fields: object) -> str:
        body = {"input_prompt": prompt, "model": MODEL, "recipient_email": "dev@example.com"}
        status, response = http_json("POST", f"{self.api_url}/api/evaluate", {**body, **fields})
        assert status == 202, response
        evaluation_id: str = response["id"]
        return evaluation_id

    def emails_for(self, evaluation_id: str) -> int:
        if not self.outbox.exists():
            return 0
        return sum(evaluation_id in path.read_text() for path in self.outbox.iterdir())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in self.processes)


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None,
    django_db_blocker: object,
    test_models: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("fault-stack")
    redis_server = RedisServer(free_port(), log_dir).start()
    postgres = TcpProxy(target_port=int(settings.DATABASES["default"].get("PORT") or 5432)).start()
    api_port = free_port()
    outbox = log_dir / "outbox"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmeval.settings",
        "DATABASE_URL": database_url(postgres.port),
        "DATABASE_CONNECT_TIMEOUT": "2",
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "EMAIL_OUTBOX_DIR": str(outbox),
        "SWEEPER_INTERVAL_SECONDS": "1",
        "PENDING_GRACE_SECONDS": "3",
        "GENERATION_TIME_LIMIT_SECONDS": "60",
        "PROVIDER_TIMEOUT_SECONDS": "30",
        "LLMEVAL_VAR_DIR": str(log_dir),
        # The stack serves one local user without keys; key checks have their own tests.
        "ALLOW_ANONYMOUS_ACCESS": "true",
    }
    celery = python_module("celery", "-A", "llmeval")
    api = Process(
        "api",
        python_module("gunicorn", "llmeval.wsgi:application", "--bind", f"127.0.0.1:{api_port}",
                      "--workers", "1", "--worker-class", "gthread", "--threads", "4",
                      "--no-control-socket"),
        env, log_dir,
    )  # fmt: skip
    generate_worker = Process(
        "worker-generate",
        [*celery, "worker", "-Q", "generate.remote,generate.local", "--pool", "prefork",
         "--concurrency", "1", "-n", f"generate-{api_port}@%h", "--loglevel", "INFO",
         "--without-mingle", "--without-gossip"],
        env, log_dir,
    )  # fmt: skip
    notify_worker = Process(
        "worker-notify",
        [*celery, "worker", "-Q", "notify,maintenance", "--pool", "threads", "--concurrency", "4",
         "-n", f"notify-{api_port}@%h", "--loglevel", "INFO", "--without-mingle",
         "--without-gossip"],
        env, log_dir,
    )  # fmt: skip
    beat = Process(
        "beat",
        [*celery, "beat", "--loglevel", "INFO", "-s", str(log_dir / "beat-schedule")],
        env, log_dir,
    )  # fmt: skip
    processes = [api, generate_worker, notify_worker, beat]
    for process in processes:
        process.start()
    generate_worker.wait_for_log(" ready.")
    notify_worker.wait_for_log(" ready.")
    wait_for(
        lambda: _status(f"http://127.0.0.1:{api_port}/api/health") == 200, 30, "the API to start"
    )

    yield Stack(
        api_url=f"http://127.0.0.1:{api_port}",
        redis=redis_server,
        postgres=postgres,
        generate_worker=generate_worker,
        outbox=outbox,
        log_dir=log_dir,
        processes=processes,
    )

    for process in processes:
        process.stop()
    redis_server.stop()
    postgres.cut()


def _status(url: str) -> int:
    try:
        return http_json("GET", url, timeout=3)[0]
    except OSError:
        return 0


def wait_all_finished(stack: Stack, ids: list[str], timeout: float = 90) -> list[Evaluation]:
    def finished() -> bool:
        statuses = Evaluation.objects.filter(pk__in=ids).values_list("status", flat=True)
        return all(status in ("completed", "failed") for status in statuses)

    try:
        wait_for(finished, timeout, f"evaluations {ids} to finish", interval=0.3)
    except AssertionError:
        rows = list(Evaluation.objects.filter(pk__in=ids).values("id", "status", "attempts"))
        raise AssertionError(f"not finished: {rows}\n{stack.logs()}") from None
    return list(Evaluation.objects.filter(pk__in=ids))


def wait_all_emailed(stack: Stack, ids: list[str], timeout: float = 30) -> None:
    def sent() -> bool:
        statuses = Notification.objects.filter(evaluation_id__in=ids).values_list(
            "status", flat=True
        )
        return len(statuses) == len(ids) and all(status == "sent" for status in statuses)

    wait_for(sent, timeout, f"emails of {ids}", interval=0.3)
    # A duplicate would be a second file; give a late duplicate time to appear.
    time.sleep(1.5)
    for evaluation_id in ids:
        assert stack.emails_for(evaluation_id) == 1, evaluation_id


def calls_for(fake: RecordingServer, prompt: str) -> int:
    return sum(prompt in request.body.decode() for request in fake.recorded())


def test_worker_child_killed_while_generating(stack: Stack, fake_provider: RecordingServer):
    calls: list[RecordedRequest] = []

    def slow_first_call(request: RecordedRequest) -> Reply:
        calls.append(request)
        return chat_completion("Answer after a crash.", delay=30.0 if len(calls) == 1 else 0.0)

    fake_provider.reset(slow_first_call)
    evaluation_id = stack.submit("kill test prompt")
    wait_for(lambda: len(calls) == 1, 30, "the model call to start")

    # The worker has one child process, so it is the one in the model call.
    [child] = stack.generate_worker.children()
    os.kill(child, signal.SIGKILL)

    [evaluation] = wait_all_finished(stack, [evaluation_id])
    assert evaluation.status == "completed", evaluation.error
    assert evaluation.response == "Answer after a crash."
    assert evaluation.attempts == 2
    assert calls_for(fake_provider, "kill test prompt") == 2
    wait_all_emailed(stack, [evaluation_id])


def test_redis_restarted_with_work_queued_and_running(stack: Stack, fake_provider: RecordingServer):
    fake_provider.reset(lambda request: chat_completion("Done.", delay=1.5))
    prompts = [f"redis restart prompt {index}" for index in range(6)]
    ids = [stack.submit(prompt) for prompt in prompts]
    wait_for(lambda: len(fake_provider.recorded()) >= 1, 20, "generation to start")

    stack.redis.stop()
    time.sleep(1)
    stack.redis.start()

    evaluations = wait_all_finished(stack, ids, timeout=120)
    assert [e.status for e in evaluations] == ["completed"] * len(ids)
    for prompt in prompts:
        assert calls_for(fake_provider, prompt) == 1, prompt
    wait_all_emailed(stack, ids)


def test_submit_while_redis_is_down(stack: Stack, fake_provider: RecordingServer):
    fake_provider.reset(lambda request: chat_completion("Queued later."))
    stack.redis.stop()

    started = time.monotonic()
    evaluation_id = stack.submit("submitted without a broker")
    elapsed = time.monotonic() - started

    assert elapsed < 10
    assert Evaluation.objects.get(pk=evaluation_id).status == "pending"
    time.sleep(2)
    stack.redis.start()

    [evaluation] = wait_all_finished(stack, [evaluation_id], timeout=120)
    assert evaluation.status == "completed", evaluation.error
    assert calls_for(fake_provider, "submitted without a broker") == 1
    wait_all_emailed(stack, [evaluation_id])


def test_postgres_outage_under_api_and_worker(stack: Stack, fake_provider: RecordingServer):
    fake_provider.reset(lambda request: chat_completion("Stored after the outage.", delay=2.0))
    evaluation_id = stack.submit("postgres outage prompt")
    wait_for(lambda: len(fake_provider.recorded()) >= 1, 20, "generation to start")

    stack.postgres.cut()
    status, body = http_json("GET", f"{stack.api_url}/api/evaluate/{evaluation_id}")
    assert status == 503
    assert "database is unavailable" in body["detail"]
    status, body = http_json("POST", f"{stack.api_url}/api/evaluate", {"input_prompt": "x"})
    assert status == 503
    time.sleep(3)
    stack.postgres.start()

    wait_for(
        lambda: _status(f"{stack.api_url}/api/evaluate/{evaluation_id}") == 200,
        30,
        "the API to recover",
    )
    [evaluation] = wait_all_finished(stack, [evaluation_id], timeout=120)
    assert evaluation.status == "completed", evaluation.error
    assert evaluation.response == "Stored after the outage."
    wait_all_emailed(stack, [evaluation_id])
