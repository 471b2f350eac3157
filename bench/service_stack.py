"""Start the llmeval processes a benchmark needs, in a temporary folder, and stop them.

The commands are those of ``llmeval run`` (src/llmeval/launcher.py): the API
under gunicorn and a Celery worker per queue, each its own process. A stack
uses its own PostgreSQL database and Redis database number, so it leaves the
development database and broker alone, and talks only to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psycopg
import redis
from psycopg import sql

from llmeval.launcher import REMOTE_WORKER_POOL_SIZE

PYTHON = sys.executable
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379"
STOP_TIMEOUT_SECONDS = 15
HEALTH_TIMEOUT_SECONDS = 60
MANAGE_TIMEOUT_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 30
LOG_TAIL_CHARS = 3000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Inherited settings that would point the stack at other servers or another model.
INHERITED_SETTINGS_REMOVED = (
    "REDIS_URL",
    "CACHE_URL",
    "DATABASE_NAME",
    "DATABASE_HOST",
    "DEFAULT_MODEL",
    "LLMEVAL_MODELS_FILE",
    "LOCAL_MODEL_THREADS",
    "ALLOW_ANONYMOUS_ACCESS",
    "ALLOWED_HOSTS",
    "DEBUG",
)


class StackError(RuntimeError):
    """A process of the stack failed to start, or a management command failed."""


@dataclass(slots=True)
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_database(name: str) -> None:
    """Create the PostgreSQL database ``name`` on 127.0.0.1 when it is missing."""
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def log_tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-LOG_TAIL_CHARS:]


class ServiceStack:
    """The API and workers of one benchmark, with their own database and Redis number."""

    def __init__(
        self,
        *,
        database: str,
        redis_db: int,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.database = database
        self.database_url = f"{POSTGRES_URL}/{database}"
        self.broker_url = f"{REDIS_URL}/{redis_db}"
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.components: list[Component] = []
        self.env = self._build_env()
        self.env.update(extra_env or {})

    def _build_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in INHERITED_SETTINGS_REMOVED:
            env.pop(name, None)
        env.update(
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            SECRET_KEY=secrets.token_urlsafe(50),
            LLMEVAL_ENV_FILE="",
            LLMEVAL_VAR_DIR=str(self.workdir),
            THROTTLE_SUBMIT_RATE="1000000/min",
            THROTTLE_READ_RATE="1000000/min",
            LOG_LEVEL="WARNING",
        )
        return env

    def prepare(self) -> None:
        """Create the database if missing, empty the Redis database and apply migrations."""
        ensure_database(self.database)
        flush_redis(self.broker_url)
        self.manage("migrate", "--noinput")

    def delete_evaluations(self) -> None:
        """Delete the evaluations (and their notifications) left by an earlier run."""
        self.manage(
            "shell",
            "-c",
            "from llmeval.evaluations.models import Evaluation; Evaluation.objects.all().delete()",
        )

    def manage(self, *args: str) -> str:
        """Run ``python -m llmeval ARGS`` with the stack's settings and return its stdout."""
        argv = [PYTHON, "-m", "llmeval", *args]
        result = subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=MANAGE_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"'llmeval {' '.join(args)}' failed with exit code {result.returncode}:\n"
                f"{result.stderr[-LOG_TAIL_CHARS:]}"
            )
        return result.stdout

    def create_api_key(self, username: str) -> str:
        """Create an API key for ``username`` (and the user when missing); return the key."""
        return self.manage("apikey", "create", "--user", username).strip()

    def start_api(self, workers: int = 1, threads: int = 8) -> None:
        """Start gunicorn with gthread workers, as ``llmeval run`` does, and wait until healthy."""
        self.start(
            "api",
            [
                PYTHON, "-m", "gunicorn", "llmeval.wsgi:application",
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(workers),
                "--worker-class", "gthread",
                "--threads", str(threads),
                "--backlog", "2048",
                "--no-control-socket",
            ],
        )  # fmt: skip
        self.wait_until_healthy()

    def start_worker(self, name: str, queues: str, pool: str, concurrency: int) -> None:
        """Start a Celery worker for ``queues`` with the given pool and concurrency."""
        self.start(
            name,
            [
                PYTHON, "-m", "celery", "-A", "llmeval", "worker",
                "-Q", queues,
                "--pool", pool, "--concurrency", str(concurrency),
                "--loglevel", "WARNING",
                "--without-mingle", "--without-gossip", "--without-heartbeat",
                "-n", f"{name}@%h",
            ],
        )  # fmt: skip

    def start_remote_workers(
        self,
        max_concurrency: int,
        workers: int = 2,
        threads: int = 0,
        pool_size: int = REMOTE_WORKER_POOL_SIZE,
    ) -> None:
        """Start threads workers for generate.remote, configured as ``llmeval run`` does.

        Without ``threads``, the workers share 3/2 of ``max_concurrency`` in threads,
        so threads with a claimed row wait for a slot instead of for a message.
        Only the workers get the connection pool (``pool_size``, 0 for none).
        """
        threads = threads or -(-3 * max_concurrency // (2 * workers))
        self.env["DATABASE_POOL_SIZE"] = str(pool_size)
        for index in range(workers):
            self.start_worker(f"remote{index}", "generate.remote", "threads", threads)

    def wait_until_finished(self, count: int, deadline: float, poll_seconds: float = 0.1) -> None:
        """Wait until ``count`` evaluations are completed or failed, or raise TimeoutError."""
        while self.count("status IN ('completed', 'failed')") < count:
            self.check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the evaluations did not finish by the deadline ({count=})")
            time.sleep(poll_seconds)

    def cpu_seconds(self) -> float:
        """Return the CPU time used so far by every started process and its children."""
        return sum(_tree_cpu_seconds(component.process.pid) for component in self.components)

    def count(self, where: str = "TRUE") -> int:
        """Count the stored evaluations that match an SQL condition."""
        url = self.database_url.replace("postgres://", "postgresql://")
        with psycopg.connect(url) as conn:
            query = f"SELECT count(*) FROM evaluations_evaluation WHERE {where}"
            row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def start_local_worker(self) -> None:
        """Start one Celery worker for the generate.local queue: one process, one model."""
        self.start(
            "worker-local",
            [
                PYTHON, "-m", "celery", "-A", "llmeval", "worker",
                "-Q", "generate.local",
                "--pool", "prefork", "--concurrency", "1",
                "--loglevel", "WARNING",
                "--without-mingle", "--without-gossip",
            ],
        )  # fmt: skip

    def start(self, name: str, argv: list[str]) -> None:
        log_path = self.workdir / f"{name}.log"
        log_file = log_path.open("wb")
        # A new session makes the process the leader of its own group, so a
        # kill can reach its children (gunicorn's and Celery's pool processes).
        process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.components.append(Component(name, process, log_path, log_file))

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        api = self.components[-1]
        with httpx.Client(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if api.process.poll() is not None:
                    raise StackError(
                        f"the API exited with code {api.process.returncode}:\n"
                        f"{log_tail(api.log_path)}"
                    )
                try:
                    if client.get(f"{self.base_url}/api/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise StackError(
            f"the API was not healthy within {HEALTH_TIMEOUT_SECONDS} s:\n{log_tail(api.log_path)}"
        )

    def check_running(self) -> None:
        """Raise StackError when a started process has exited."""
        for component in self.components:
            code = component.process.poll()
            if code is not None:
                raise StackError(
                    f"{component.name} exited with code {code}:\n{log_tail(component.log_path)}"
                )

    def stop(self) -> None:
        """Send SIGTERM to every started process, kill those still alive after 15 s."""
        for component in self.components:
            if component.process.poll() is None:
                component.process.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for component in self.components:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                component.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                print(
                    f"{component.name} (pid {component.process.pid}) did not stop within "
                    f"{STOP_TIMEOUT_SECONDS} s; killing its process group",
                    file=sys.stderr,
                )
                os.killpg(component.process.pid, signal.SIGKILL)
                component.process.wait()
            component.log_file.close()
        self.components.clear()
        flush_redis(self.broker_url)


def _tree_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    fields = stat.read_text().rsplit(")", 1)[1].split()
    # utime, stime, cutime and cstime: fields 14 to 17 of proc(5), counted after the name.
    own = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    children_file = Path(f"/proc/{pid}/task/{pid}/children")
    children = children_file.read_text().split() if children_file.exists() else []
    return own + sum(_tree_cpu_seconds(int(child)) for child in children)


def start_fake_provider(
    latency_ms: int, max_concurrency: int, seconds: int, tokens: int = 32
) -> tuple[subprocess.Popen[str], str]:
    """Start bench/fake_provider.py in a process of its own; return the process and its URL."""
    process = subprocess.Popen(
        [PYTHON, str(Path(__file__).with_name("fake_provider.py")),
         "--latency-ms", str(latency_ms), "--max-concurrency", str(max_concurrency),
         "--tokens", str(tokens), "--duration", str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    first_line = process.stdout.readline().strip()
    if not first_line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the fake provider did not start: {first_line!r}")
    return process, first_line.removeprefix("listening on ")


def provider_stats(url: str) -> dict[str, int]:
    """Return the counters of a fake provider started by ``start_fake_provider``."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", "/stats")
    stats: dict[str, int] = json.loads(connection.getresponse().read())
    return stats


def write_remote_model(workdir: Path, name: str, base_url: str, max_concurrency: int) -> Path:
    """Write a models file whose default model ``name`` is served at ``base_url``; return it."""
    path = workdir / "models.toml"
    path.write_text(
        f'default = "{name}"\n\n[models.{name}]\nprovider = "huggingface"\n'
        f'base_url = "{base_url}"\nmodel_id = "fake"\nmax_concurrency = {max_concurrency}\n'
    )
    return path


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def post_json(
    connection: http.client.HTTPConnection, path: str, body: dict[str, object], key: str | None
) -> int:
    """POST a JSON body on a kept-alive connection and return the status code."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    connection.request("POST", path, body=json.dumps(body), headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status


def post_concurrently(
    port: int,
    path: str,
    body: dict[str, object] | list[dict[str, object]],
    key: str | None,
    count: int,
    clients: int,
) -> tuple[float, list[float]]:
    """POST ``body`` ``count`` times from ``clients`` threads; return (seconds, latencies in ms).

    ``body`` may be a list of ``count`` bodies instead, each posted once.

    Raises RuntimeError naming the first status when any response is not 202.
    """
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    bodies = body if isinstance(body, list) else [body] * count
    if len(bodies) != count:
        raise ValueError(f"{len(bodies)} bodies given for {count} requests")
    queue = iter(bodies)
    shares = [count // clients + (index < count % clients) for index in range(clients)]

    def client(share: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
        for _ in range(share):
            with lock:
                next_body = next(queue)
            started = time.perf_counter()
            status = post_json(connection, path, next_body, key)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if status != 202:
                    failures.append(status)
        connection.close()

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started

    if failures:
        raise RuntimeError(
            f"{len(failures)} of {count} POSTs to {path} failed, the first with HTTP {failures[0]}"
        )
    return seconds, latencies


def api_client(base_url: str, api_key: str) -> httpx.Client:
    """Return an HTTP client for the API that reuses one connection and ignores proxy settings."""
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=REQUEST_TIMEOUT_SECONDS,
        trust_env=False,
    )
