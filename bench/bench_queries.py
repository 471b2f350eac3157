"""Overhead benchmark: database queries per submission, per worker evaluation and per list page.

It runs the service's code in this process against a PostgreSQL database of
its own (``llmeval_bench_queries``) and Redis database 9 on 127.0.0.1, and
counts the SQL statements that Django sends:

- a submission, ``POST /api/evaluate`` through Django's test client, with and
  without a recipient email, after one warm-up request. The warm-up writes the
  key's ``last_used_at`` (at most once a minute) and fills the process's key
  cache (``AUTH_CACHE_SECONDS``, 0 turns it off), so with the default the
  counted requests do no key lookup;
- a worker evaluation, the real ``evaluations.generate`` task run in this
  process against bench/fake_provider.py, from claim to stored result;
- a list page, ``GET /api/evaluate``, with 10 and with 50 rows per page, and
  with 100 and with 2,000 stored evaluations.

Transaction control (BEGIN, COMMIT) is not counted. Prints each count and the
ratios that show whether a count grows with the rows: 1.00 means it does not.
Targets: about 2 per submission (1 here, plus the key lookup on a cache miss),
about 3 per worker evaluation, ratios 1.00.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_provider import FakeProvider
from service_stack import ensure_database, flush_redis

DATABASE = "llmeval_bench_queries"
BROKER_URL = "redis://127.0.0.1:6379/9"
MODEL = "bench-remote"
TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"})


def configure(models_file: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="llmeval.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        CELERY_BROKER_URL=BROKER_URL,
        SECRET_KEY=secrets.token_urlsafe(50),
        LLMEVAL_ENV_FILE="",
        LLMEVAL_MODELS_FILE=str(models_file),
        THROTTLE_SUBMIT_RATE="1000000/min",
        THROTTLE_READ_RATE="1000000/min",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="testserver",
    )
    for name in ("DATABASE_POOL_SIZE", "DEFAULT_MODEL", "REDIS_URL"):
        os.environ.pop(name, None)


def count_queries(action: Callable[[], Any]) -> tuple[int, list[str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        action()
    statements = [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].split(" ", 1)[0] not in TRANSACTION_CONTROL
    ]
    return len(statements), statements


def main() -> None:
    provider = FakeProvider(latency_ms=0, tokens=8)
    provider_url = provider.run_in_thread()
    workdir = Path(tempfile.mkdtemp(prefix="llmeval-bench-queries-"))
    models = workdir / "models.toml"
    models.write_text(
        f'default = "{MODEL}"\n\n[models.{MODEL}]\nprovider = "huggingface"\n'
        f'base_url = "{provider_url}/v1"\nmodel_id = "fake"\nmax_concurrency = 4\n'
    )
    configure(models)
    ensure_database(DATABASE)
    flush_redis(BROKER_URL)
    try:
        counts = measure()
    finally:
        flush_redis(BROKER_URL)
        provider.stop_thread()
    report(counts)


def measure() -> dict[str, int]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from llmeval.evaluations.models import Evaluation
    from llmeval.evaluations.tasks import generate_evaluation

    call_command("migrate", verbosity=0)
    Evaluation.objects.all().delete()
    output = io.StringIO()
    call_command("apikey", "create", "--user", "bench-queries", stdout=output, stderr=io.StringIO())
    client = Client(HTTP_AUTHORIZATION=f"Bearer {output.getvalue().strip()}")

    def post(body: dict[str, object]) -> str:
        response = client.post("/api/evaluate", json.dumps(body), content_type="application/json")
        if response.status_code != 202:
            raise RuntimeError(f"POST /api/evaluate returned {response.status_code}")
        evaluation_id: str = response.json()["id"]
        return evaluation_id

    counts: dict[str, int] = {}
    post({"input_prompt": "warm-up"})
    counts["submission"], _ = count_queries(lambda: post({"input_prompt": "hi"}))
    counts["submission with email"], _ = count_queries(
        lambda: post({"input_prompt": "hi", "recipient_email": "dev@example.com"})
    )

    evaluation_id = post({"input_prompt": "hi", "model": MODEL})
    counts["worker evaluation"], _ = count_queries(
        lambda: generate_evaluation.apply(args=(evaluation_id, MODEL))
    )
    status = Evaluation.objects.get(pk=evaluation_id).status
    if status != "completed":
        raise RuntimeError(f"the worker evaluation ended {status}, not completed")

    user = Evaluation.objects.get(pk=evaluation_id).owner
    for stored in (100, 2000):
        missing = stored - Evaluation.objects.filter(owner=user).count()
        Evaluation.objects.bulk_create(
            Evaluation(
                owner=user, input_prompt=f"p{i}", model=MODEL, max_new_tokens=8, temperature=0.7
            )
            for i in range(missing)
        )
        for page_size in (10, 50):
            counts[f"list page of {page_size}, {stored} stored"], _ = count_queries(
                lambda size=page_size: client.get(f"/api/evaluate?page_size={size}")
            )
    return counts


def report(counts: dict[str, int]) -> None:
    print("overhead benchmark: SQL statements per request (BEGIN and COMMIT not counted)")
    for name, count in counts.items():
        print(f"  {name:<32} {count}")
    rows_ratio = counts["list page of 50, 2000 stored"] / counts["list page of 10, 2000 stored"]
    stored_ratio = counts["list page of 50, 2000 stored"] / counts["list page of 50, 100 stored"]
    print(f"ratio list queries, 50 rows / 10 rows per page: {rows_ratio:.2f} (target 1.00)")
    print(f"ratio list queries, 2,000 / 100 stored: {stored_ratio:.2f} (target 1.00)")
    print(
        f"submission: {counts['submission']} with the key cached (target about 2); "
        f"worker evaluation: {counts['worker evaluation']} (target about 3)"
    )


if __name__ == "__main__":
    main()
