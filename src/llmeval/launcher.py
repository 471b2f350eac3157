"""``llmeval run``: prepare the database and run the API, the workers and beat in the foreground.

Each component runs as its own process, as it would in production, and the
launcher stops them all when one exits or when it receives SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from llmeval import config
from llmeval.env import Env, load_env

logger = logging.getLogger("llmeval.launcher")

STOP_TIMEOUT_SECONDS = 15
PROBE_TIMEOUT_SECONDS = 1.0
# DATABASE_POOL_SIZE of the remote generation worker when none is set. Each
# evaluation uses a connection twice, for a few milliseconds, and without a pool
# each use opens a new PostgreSQL connection, which cost PostgreSQL about 11 ms
# of CPU per evaluation (bench/bench_end_to_end.py on 2 cores).
REMOTE_WORKER_POOL_SIZE = 8


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    argv: list[str]
    listens_on: str
    # Environment variables set for this component only, on top of the launcher's.
    env: dict[str, str] = field(default_factory=dict)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s launcher %(message)s")
    choose_backends(Path.cwd())
    env = load_env()
    host = env.str("API_HOST", "127.0.0.1")
    port = env.int("PORT", 8000, minimum=1, maximum=65535)
    # Links in emails point at this API unless PUBLIC_BASE_URL is set.
    if not env.is_set("PUBLIC_BASE_URL"):
        os.environ["PUBLIC_BASE_URL"] = f"http://{host}:{port}"

    var_dir = Path(env.str("LLMEVAL_VAR_DIR", str(Path.cwd() / "var")))
    ensure_secret_key(env, var_dir)
    ensure_postgres_database(env)
    run_checked([sys.executable, "-m", "llmeval", "migrate", "--noinput"], "migrate")
    run_checked(
        [
            sys.executable,
            "-m",
            "llmeval",
            "ensure_local_key",
            "--file",
            str(var_dir / "local-api-key"),
        ],
        "API key check",
    )

    components = build_components(host, port, env)
    return supervise(components)


def choose_backends(cwd: Path) -> None:
    """Fall back to SQLite and a file-based broker when no server is configured or reachable."""
    env = load_env()
    database_configured = env.is_set("DATABASE_URL") or env.is_set("DATABASE_NAME")
    broker_configured = env.is_set("CELERY_BROKER_URL") or env.is_set("REDIS_URL")
    var_dir = Path(env.str("LLMEVAL_VAR_DIR", str(cwd / "var")))
    var_dir.mkdir(parents=True, exist_ok=True)
    fallbacks = []

    if not database_configured and not is_reachable("127.0.0.1", 5432):
        os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'llmeval.sqlite3'}"
        fallbacks.append(f"SQLite at {var_dir / 'llmeval.sqlite3'}")
    if not broker_configured and not is_reachable("127.0.0.1", 6379):
        os.environ["CELERY_BROKER_URL"] = "filesystem://"
        fallbacks.append(f"a file-based broker in {var_dir / 'broker'}")

    if fallbacks:
        logger.warning(
            "no PostgreSQL or Redis configured and reachable on 127.0.0.1; using %s "
            "(set DATABASE_URL and REDIS_URL to use servers)",
            " and ".join(fallbacks),
        )


def ensure_secret_key(env: Env, var_dir: Path) -> None:
    """Create ``var/secret-key`` for a local install that sets no SECRET_KEY."""
    if env.is_set("SECRET_KEY", aliases=("DJANGO_SECRET_KEY",)):
        return
    path = var_dir / "secret-key"
    if path.exists():
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(50))
    logger.info("created a secret key in %s; set SECRET_KEY in production", path)


def is_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def ensure_postgres_database(env: Env) -> None:
    """Create the configured PostgreSQL database when the server lacks it."""
    url = os.environ.get("DATABASE_URL") or config.database_url(env)
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return

    import psycopg
    from psycopg import sql

    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                logger.info("created PostgreSQL database %s", name)
    except psycopg.Error as exc:
        # The database may exist while the role cannot read pg_database; migrate reports the rest.
        logger.warning("could not check for database %s: %s", name, exc.__class__.__name__)


def run_checked(argv: list[str], label: str) -> None:
    logger.info("running %s", label)
    result = subprocess.run(argv, check=False)  # noqa: S603
    if result.returncode != 0:
        raise SystemExit(f"{label} failed with exit code {result.returncode}")


def build_components(host: str, port: int, env: Env) -> list[Component]:
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "llmeval", "--quiet"]
    remote_threads = env.int("REMOTE_WORKER_CONCURRENCY", 32, minimum=1)
    api_workers = env.int("API_WORKERS", 2, minimum=1)

    api = [
        python, "-m", "gunicorn", "llmeval.wsgi:application",
        "--bind", f"{host}:{port}",
        "--workers", str(api_workers),
        "--worker-class", "gthread",
        "--threads", "8",
        "--access-logfile", "-",
        # The default control socket is one path per user, which two
        # instances on one machine would share.
        "--no-control-socket",
    ]  # fmt: skip
    local = [
        *celery, "worker", "-Q", "generate.local", "--pool", "prefork", "--concurrency", "1",
        "-n", "local@%h", "--loglevel", "INFO",
    ]  # fmt: skip
    remote = [
        *celery, "worker", "-Q", "generate.remote", "--pool", "threads",
        "--concurrency", str(remote_threads), "-n", "remote@%h", "--loglevel", "INFO",
    ]  # fmt: skip
    notify = [
        *celery, "worker", "-Q", "notify,maintenance", "--pool", "threads", "--concurrency", "4",
        "-n", "notify@%h", "--loglevel", "INFO",
    ]  # fmt: skip
    beat = [*celery, "beat", "--loglevel", "INFO"]
    remote_env = {}
    if not env.is_set("DATABASE_POOL_SIZE"):
        remote_env["DATABASE_POOL_SIZE"] = str(REMOTE_WORKER_POOL_SIZE)

    return [
        Component("api", api, f"http://{host}:{port}/api/evaluate"),
        Component("worker-local", local, "queue generate.local (one process, one loaded model)"),
        Component(
            "worker-remote",
            remote,
            f"queue generate.remote ({remote_threads} threads)",
            env=remote_env,
        ),
        Component("worker-notify", notify, "queues notify and maintenance (4 threads)"),
        Component("beat", beat, "periodic sweeper of lost evaluations and emails"),
    ]


def supervise(components: list[Component]) -> int:
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    for component in components:
        env = {**os.environ, **component.env} if component.env else None
        processes[component.name] = subprocess.Popen(component.argv, env=env)  # noqa: S603
        logger.info(
            "started %s (pid %s): %s",
            component.name,
            processes[component.name].pid,
            component.listens_on,
        )

    exit_code = 0
    while not stopping.is_set():
        for name, process in processes.items():
            code = process.poll()
            if code is not None:
                logger.error("%s exited with code %s; stopping the others", name, code)
                exit_code = 1
                stopping.set()
                break
        stopping.wait(0.5)

    stop_all(processes)
    return exit_code


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for name, process in processes.items():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %ss; killing it", name, STOP_TIMEOUT_SECONDS)
            process.kill()
            process.wait()
    logger.info("all components stopped")
