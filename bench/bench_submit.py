"""Submit benchmark: POST /api/evaluate against a bare view doing the same insert and enqueue.

Both run on the same gunicorn server (the production configuration of
`llmeval run`: gthread workers) in the same run, in alternating rounds, from the
same client threads. Prints requests per second and p50/p99 latency of each,
and the ratio API / bare (target: at least 0.8).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_stack import ServiceStack, percentile, post_concurrently

BODY = {"input_prompt": "explain generators in python", "max_new_tokens": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="POSTs per round and target")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per target")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llmeval-bench-submit-"))
    stack = ServiceStack(
        database="llmeval_bench_submit",
        redis_db=7,
        workdir=workdir,
        extra_env={"LLMEVAL_BENCH_BARE_VIEW": "1"},
    )
    try:
        stack.prepare()
        stack.delete_evaluations()
        key = stack.create_api_key("bench")
        # Two gthread workers of 8 threads: the API configuration of llmeval run.
        stack.start_api(workers=2)
        targets = {"api": ("/api/evaluate", key), "bare": ("/bench/bare-submit", None)}
        for path, target_key in targets.values():
            post_concurrently(stack.port, path, BODY, target_key, 200, args.clients)  # warm-up

        totals: dict[str, tuple[float, list[float]]] = {name: (0.0, []) for name in targets}
        for _ in range(args.rounds):
            for name, (path, target_key) in targets.items():
                seconds, latencies = post_concurrently(
                    stack.port, path, BODY, target_key, args.requests, args.clients
                )
                spent, collected = totals[name]
                totals[name] = (spent + seconds, collected + latencies)
    finally:
        stack.stop()

    print(f"submit benchmark: {args.rounds} rounds x {args.requests} POSTs, {args.clients} clients")
    print(f"{'target':<6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    rates = {}
    for name, (seconds, latencies) in totals.items():
        rates[name] = len(latencies) / seconds
        print(
            f"{name:<6} {rates[name]:>8.1f} {percentile(latencies, 0.5):>8.2f} "
            f"{percentile(latencies, 0.99):>8.2f}"
        )
    print(f"ratio api/bare: {rates['api'] / rates['bare']:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
