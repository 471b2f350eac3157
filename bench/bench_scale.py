"""Measure how API latency changes from 1,000 to 100,000 stored evaluations.

The API runs under gunicorn as ``llmeval run`` starts it, with the database
``llmeval_bench_scale`` and Redis database 10 of its own. The benchmark user's
evaluations are written with one ``COPY`` (UUIDv7 ids, mixed statuses), the
table is vacuumed and analysed so the planner has current statistics, and then
one client sends, one after another, for each size:

- detail: ``GET /api/evaluate/{id}`` of random stored ids;
- list: ``GET /api/evaluate?page_size=50``;
- list page 2: the ``next`` link of that first page;
- list completed: ``GET /api/evaluate?status=completed&page_size=50``;
- submit: ``POST /api/evaluate`` (no worker runs, so the evaluations stay pending).

It prints p50 and p99 per kind and size, the ratio p50(largest)/p50(smallest)
per kind, and the ``EXPLAIN ANALYZE`` plans of the list and detail queries at
the largest size, as the API runs them.

NOTE: every stored evaluation belongs to the benchmark user, so the plans are
those of a single-user table. With many users the planner may choose other
indexes, and those plans are not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import uuid_utils.compat
from service_stack import ServiceStack, StackError, api_client, flush_redis

DATABASE = "llmeval_bench_scale"
REDIS_DB = 10
USERNAME = "bench"
TARGET_RATIO = 1.2
MODEL = "smollm2-135m-instruct"
SUBMIT_BODY = {"input_prompt": "Explain what a Python generator is.", "max_new_tokens": 64}
LIST_PATH = "/api/evaluate?page_size=50"
COMPLETED_PATH = "/api/evaluate?status=completed&page_size=50"
CAPTURE_MARKER = "BENCH_QUERIES "
# A plan node that reads the evaluations table, such as
# "Index Scan Backward using evaluation_owner_id on evaluations_evaluation".
SCAN_NODE = re.compile(
    r"[A-Z][A-Za-z ]*Scan(?: Backward)?(?: using \S+)? on evaluations_evaluation\b"
)
SELECT_LIST = re.compile(r"^SELECT .*? FROM ")

# One status per slot of 20 rows: 70 % completed, 15 % failed, 10 % pending, 5 % running.
STATUS_CYCLE = ("completed",) * 14 + ("failed",) * 3 + ("pending",) * 2 + ("running",)
RESPONSE_TEXT = (
    "A generator is a function that yields values one at a time instead of building "
    "a whole list. Each call to next() resumes the function where it stopped. "
) * 4

COPY_COLUMNS = (
    "id",
    "status",
    "owner_id",
    "input_prompt",
    "system_prompt",
    "model",
    "max_new_tokens",
    "temperature",
    "seed",
    "response",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "finish_reason",
    "provider_request_id",
    "error",
    "attempts",
    "lease_expires_at",
    "queued_at",
    "created_at",
    "started_at",
    "completed_at",
    "claimed_by",
    "idempotency_key",
    "request_fingerprint",
    "expected_output",
    "metrics",
    "passed",
    "scores",
)

# Run inside `llmeval shell` to record the SQL the API runs for each path. Django's
# test client calls the views in that process, so their queries can be captured there.
CAPTURE_SQL_SCRIPT = f"""
import json, os
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

client = Client(headers={{"authorization": "Bearer " + os.environ["BENCH_API_KEY"]}})
captured = {{}}
for name, path in json.loads(os.environ["BENCH_PATHS"]).items():
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, HTTP_HOST="127.0.0.1")
    captured[name] = {{
        "status": response.status_code,
        "sql": [query["sql"] for query in queries.captured_queries],
    }}
print({CAPTURE_MARKER!r} + json.dumps(captured))
"""


@dataclass(frozen=True, slots=True)
class Latencies:
    p50_ms: float
    p99_ms: float


def check_deadline(deadline: float, step: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"the benchmark ran out of time (--time-limit) during {step}")


def connect(stack: ServiceStack) -> psycopg.Connection[Any]:
    return psycopg.connect(stack.database_url, autocommit=True, connect_timeout=5)


def user_id(stack: ServiceStack, username: str) -> int:
    with connect(stack) as conn:
        row = conn.execute("SELECT id FROM auth_user WHERE username = %s", (username,)).fetchone()
    if row is None:
        raise StackError(f"user {username!r} not found after 'llmeval apikey create'")
    return int(row[0])


def count_evaluations(stack: ServiceStack, owner_id: int) -> int:
    with connect(stack) as conn:
        row = conn.execute(
            "SELECT count(*) FROM evaluations_evaluation WHERE owner_id = %s", (owner_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def evaluation_rows(owner_id: int, count: int, first_index: int) -> Iterator[tuple[Any, ...]]:
    """Yield ``count`` rows in COPY_COLUMNS order, oldest first, so ids and times agree."""
    for index in range(first_index, first_index + count):
        status = STATUS_CYCLE[index % len(STATUS_CYCLE)]
        created = datetime.now(UTC)
        finished = status in ("completed", "failed")
        completed = status == "completed"
        yield (
            uuid_utils.compat.uuid7(),
            status,
            owner_id,
            f"Benchmark prompt {index}: explain topic {index % 97} in a few sentences.",
            "",
            MODEL,
            256,
            0.7,
            index,
            RESPONSE_TEXT if completed else "",
            18 if completed else None,
            120 if completed else None,
            900 + index % 500 if completed else None,
            "stop" if completed else "",
            "",
            "the provider is unavailable or rate limited" if status == "failed" else "",
            0 if status == "pending" else 1,
            created + timedelta(minutes=10) if status == "running" else None,
            created,
            created,
            None if status == "pending" else created,
            created if finished else None,
            "" if status == "pending" else f"bench-task-{index}",
            None,
            "",
            None,
            "[]",
            None,
            "[]",
        )


def insert_evaluations(stack: ServiceStack, owner_id: int, count: int, first_index: int) -> None:
    """Write ``count`` evaluations with COPY, then VACUUM ANALYZE for current planner statistics."""
    columns = ", ".join(COPY_COLUMNS)
    statement = f"COPY evaluations_evaluation ({columns}) FROM STDIN"
    with connect(stack) as conn:
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in evaluation_rows(owner_id, count, first_index):
                copy.write_row(row)
        conn.execute("VACUUM (ANALYZE) evaluations_evaluation")


def random_ids(stack: ServiceStack, owner_id: int, count: int) -> list[str]:
    with connect(stack) as conn:
        rows = conn.execute(
            "SELECT id FROM evaluations_evaluation WHERE owner_id = %s ORDER BY random() LIMIT %s",
            (owner_id, count),
        ).fetchall()
    return [str(row[0]) for row in rows]


def time_requests(
    label: str,
    send: Callable[[int], httpx.Response],
    expected_status: int,
    warm_up: int,
    count: int,
    deadline: float,
) -> Latencies:
    """Send ``warm_up`` untimed and then ``count`` timed requests one after another."""
    timings_ms: list[float] = []
    for index in range(warm_up + count):
        check_deadline(deadline, label)
        started = time.perf_counter()
        response = send(index)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != expected_status:
            raise StackError(
                f"{label}: expected {expected_status}, got {response.status_code}: "
                f"{response.text[:300]}"
            )
        if index >= warm_up:
            timings_ms.append(elapsed_ms)

    p99 = statistics.quantiles(timings_ms, n=100, method="inclusive")[98]
    return Latencies(statistics.median(timings_ms), p99)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def next_page_path(client: httpx.Client) -> str:
    response = client.get(LIST_PATH)
    response.raise_for_status()
    next_url = response.json()["next"]
    if not next_url:
        raise StackError("the first page has no next link; store more than 50 evaluations")
    return path_of(next_url)


def measure(
    client: httpx.Client, detail_ids: list[str], warm_up: int, count: int, deadline: float
) -> dict[str, Latencies]:
    """Time every kind of request; submit comes last because it adds rows."""
    page_two = next_page_path(client)
    kinds: list[tuple[str, Callable[[int], httpx.Response], int]] = [
        (
            "detail",
            lambda index: client.get(f"/api/evaluate/{detail_ids[index % len(detail_ids)]}"),
            200,
        ),
        ("list", lambda index: client.get(LIST_PATH), 200),
        ("list page 2", lambda index: client.get(page_two), 200),
        ("list completed", lambda index: client.get(COMPLETED_PATH), 200),
        ("submit", lambda index: client.post("/api/evaluate", json=SUBMIT_BODY), 202),
    ]
    return {
        label: time_requests(label, send, status, warm_up, count, deadline)
        for label, send, status in kinds
    }


def capture_sql(stack: ServiceStack, api_key: str, paths: dict[str, str]) -> dict[str, Any]:
    """Return, per path, the SQL the API runs for it, recorded in ``llmeval shell``."""
    stack.env["BENCH_API_KEY"] = api_key
    stack.env["BENCH_PATHS"] = json.dumps(paths)
    try:
        output = stack.manage("shell", "-c", CAPTURE_SQL_SCRIPT)
    finally:
        del stack.env["BENCH_API_KEY"], stack.env["BENCH_PATHS"]
    for line in output.splitlines():
        if line.startswith(CAPTURE_MARKER):
            captured: dict[str, Any] = json.loads(line.removeprefix(CAPTURE_MARKER))
            return captured
    raise StackError(f"llmeval shell printed no {CAPTURE_MARKER.strip()} line:\n{output[-2000:]}")


def explain(stack: ServiceStack, api_key: str, paths: dict[str, str]) -> list[str]:
    """Run EXPLAIN ANALYZE on each evaluation query of each path; return the report lines."""
    lines: list[str] = []
    captured = capture_sql(stack, api_key, paths)
    with connect(stack) as conn:
        for name, result in captured.items():
            queries = [sql for sql in result["sql"] if "evaluations_evaluation" in sql]
            if result["status"] != 200 or not queries:
                lines.append(f"{name}: status {result['status']}, no evaluation query captured")
                continue
            for sql in queries:
                rows = conn.execute(f"EXPLAIN (ANALYZE, FORMAT TEXT) {sql}").fetchall()
                plan = [str(row[0]) for row in rows]
                lines.append(f"{name}: {plan_verdict(plan)}")
                lines.append(f"  SQL: {short_sql(sql)}")
                lines.extend(f"    {step}" for step in plan)
    return lines


def plan_verdict(plan: list[str]) -> str:
    """Name the scans of evaluations_evaluation in a plan, flagging a sequential scan."""
    scans = [match.group(0) for step in plan if (match := SCAN_NODE.search(step))]
    if any(scan.startswith("Seq Scan") for scan in scans):
        return "SEQ SCAN: " + "; ".join(scans)
    if scans:
        return "index used: " + "; ".join(scans)
    return "no scan of evaluations_evaluation found in the plan"


def short_sql(query: str) -> str:
    return SELECT_LIST.sub("SELECT ... FROM ", query, count=1)


def print_table(results: dict[int, dict[str, Latencies]], sizes: list[int]) -> None:
    print(f"{'kind':<16}{'evaluations':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for kind in results[sizes[0]]:
        for size in sizes:
            latencies = results[size][kind]
            print(f"{kind:<16}{size:>12,}{latencies.p50_ms:>10.2f}{latencies.p99_ms:>10.2f}")


def print_ratios(results: dict[int, dict[str, Latencies]], small: int, large: int) -> None:
    print(f"ratio p50({large:,})/p50({small:,}) per kind (target < {TARGET_RATIO}):")
    for kind in results[small]:
        ratio = results[large][kind].p50_ms / results[small][kind].p50_ms
        verdict = "met" if ratio < TARGET_RATIO else "missed"
        print(f"  {kind:<16}{ratio:>6.3f}  {verdict}")


def run(stack: ServiceStack, args: argparse.Namespace, deadline: float) -> None:
    stack.prepare()
    api_key = stack.create_api_key(USERNAME)
    owner_id = user_id(stack, USERNAME)
    with connect(stack) as conn:
        # This is the benchmark's own database, so every run starts from an empty table.
        conn.execute("TRUNCATE evaluations_evaluation CASCADE")
    stack.start_api()

    results: dict[int, dict[str, Latencies]] = {}
    inserted = 0
    with api_client(stack.base_url, api_key) as client:
        for size in args.sizes:
            check_deadline(deadline, f"the insert of {size:,} evaluations")
            missing = size - count_evaluations(stack, owner_id)
            started = time.perf_counter()
            if missing > 0:
                insert_evaluations(stack, owner_id, missing, inserted)
                inserted += missing
            stored = count_evaluations(stack, owner_id)
            print(
                f"{stored:,} evaluations stored ({max(missing, 0):,} written by COPY and "
                f"vacuumed in {time.perf_counter() - started:.1f} s)",
                flush=True,
            )

            # Start each size without the rate-limit counters and queued tasks of the last one.
            flush_redis(stack.broker_url)
            detail_ids = random_ids(stack, owner_id, args.warm_up + args.requests)
            results[size] = measure(client, detail_ids, args.warm_up, args.requests, deadline)

        paths = {
            "detail": f"/api/evaluate/{detail_ids[0]}",
            "list": LIST_PATH,
            "list page 2": next_page_path(client),
            "list completed": COMPLETED_PATH,
        }

    sizes = args.sizes
    print()
    print_table(results, sizes)
    print()
    print_ratios(results, sizes[0], sizes[-1])
    print()
    print(f"EXPLAIN (ANALYZE) of the API's evaluation queries at {sizes[-1]:,} evaluations:")
    for line in explain(stack, api_key, paths):
        print(line)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure p50 and p99 latency of submit, detail and list requests with "
        "1,000 and 100,000 stored evaluations, and print the p50 ratio per kind. Needs "
        f"PostgreSQL and Redis on 127.0.0.1; uses the database {DATABASE}, whose evaluations "
        f"it deletes, and Redis database {REDIS_DB}, which it empties."
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000, 100_000],
        help="Numbers of stored evaluations to measure at, ascending (default 1000 100000).",
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="Timed requests per kind and size (default 200)."
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=20,
        help="Untimed requests per kind and size before the timed ones (default 20).",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900,
        help="Seconds after which the benchmark gives up (default 900).",
    )
    args = parser.parse_args(argv)
    if args.sizes != sorted(args.sizes) or min(args.sizes) <= 50:
        parser.error("--sizes must be ascending and each above 50 (one list page)")
    if args.requests < 2 or args.warm_up < 0:
        parser.error("--requests must be 2 or more and --warm-up 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.time_limit
    loads = " ".join(f"{load:.2f}" for load in os.getloadavg())
    print(f"load average (1, 5, 15 min) before the run: {loads}", flush=True)

    with tempfile.TemporaryDirectory(prefix="llmeval-bench-") as workdir:
        stack = ServiceStack(database=DATABASE, redis_db=REDIS_DB, workdir=Path(workdir))
        try:
            run(stack, args, deadline)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
