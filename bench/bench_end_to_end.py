"""End-to-end benchmark: evaluations through API, queue, workers and database, fake provider.

The fake provider responds after L milliseconds and allows C requests in flight
(429 above). The model entry sets max_concurrency = C, so the ideal
throughput is C / L evaluations per second. Prints the measured throughput,
its ratio to ideal (target: at least 0.9), the provider's 429 count (target:
0), and the CPU milliseconds the pipeline's processes spent per evaluation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_stack import (
    ServiceStack,
    post_concurrently,
    provider_stats,
    start_fake_provider,
    write_remote_model,
)

from llmeval.launcher import REMOTE_WORKER_POOL_SIZE

MODEL = "bench-remote"
BODY: dict[str, object] = {
    "input_prompt": "Summarise the plot of Hamlet.",
    "model": MODEL,
    "max_new_tokens": 32,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16, help="submitting client threads")
    parser.add_argument("--timeout", type=int, default=300, help="seconds before giving up")
    parser.add_argument(
        "--workers", type=int, default=2, help="threads worker processes sharing C slots"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads per worker process (default 0: 3/2 of C divided among the workers, so "
        "threads with a claimed row are ready when a slot is released)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=REMOTE_WORKER_POOL_SIZE,
        help="DATABASE_POOL_SIZE of the worker processes, 0 for no pool (default "
        f"{REMOTE_WORKER_POOL_SIZE}, as llmeval run sets for its remote worker)",
    )
    args = parser.parse_args()

    fake, fake_url = start_fake_provider(args.latency_ms, args.concurrency, args.timeout + 120)
    workdir = Path(tempfile.mkdtemp(prefix="llmeval-bench-e2e-"))
    models = write_remote_model(workdir, MODEL, f"{fake_url}/v1", args.concurrency)
    stack = ServiceStack(
        database="llmeval_bench_e2e",
        redis_db=6,
        workdir=workdir,
        extra_env={"LLMEVAL_MODELS_FILE": str(models)},
    )
    try:
        stack.prepare()
        stack.delete_evaluations()
        key = stack.create_api_key("bench")
        stack.start_api(workers=2)
        stack.start_remote_workers(args.concurrency, args.workers, args.threads, args.pool_size)
        time.sleep(3)
        cpu_before = stack.cpu_seconds()

        started = time.monotonic()
        post_concurrently(stack.port, "/api/evaluate", BODY, key, args.evaluations, args.clients)
        submitted = time.monotonic() - started
        stack.wait_until_finished(args.evaluations, started + args.timeout)
        elapsed = time.monotonic() - started
        cpu = stack.cpu_seconds() - cpu_before
        failed = stack.count("status = 'failed'")
        stats = provider_stats(fake_url)
    finally:
        stack.stop()
        fake.terminate()
        fake.wait(timeout=15)

    ideal = args.concurrency / (args.latency_ms / 1000)
    throughput = args.evaluations / elapsed
    print(
        f"end-to-end benchmark: {args.evaluations} evaluations, L = {args.latency_ms} ms, "
        f"C = {args.concurrency}, ideal {ideal:.1f}/s"
    )
    print(f"submitted in {submitted:.1f} s, all finished in {elapsed:.1f} s ({failed} failed)")
    print(f"throughput: {throughput:.1f} evaluations/s")
    print(f"ratio to ideal: {throughput / ideal:.3f} (target >= 0.9)")
    print(
        f"provider: {stats.get('requests')} requests, {stats.get('rejected_429')} answered 429, "
        f"max {stats.get('max_in_flight')} in flight (target: 0 answered 429)"
    )
    print(
        f"pipeline CPU: {cpu * 1000 / args.evaluations:.1f} ms per evaluation "
        f"(API and worker processes)"
    )


if __name__ == "__main__":
    main()
