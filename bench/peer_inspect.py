"""Run the peer benchmark's prompts through Inspect AI; print one JSON line of results.

This script runs in the separate virtual environment that ``bench_peer.py``
makes under ``bench/.venv-inspect`` (Inspect AI and the openai package), not in
the project's. Inspect's ``openai-api`` provider sends each prompt to the fake
provider's OpenAI-compatible ``/v1/chat/completions``, whose address comes from
``PEER_BASE_URL``. The prompts file contains a JSON list of prompts and the word
that every response must include.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path, help="JSON file: {prompts: [...], target: str}")
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--max-connections", type=int, default=None, help="omit for Inspect's default"
    )
    args = parser.parse_args()

    spec = json.loads(args.prompts.read_text())
    samples = [Sample(input=prompt, target=spec["target"]) for prompt in spec["prompts"]]
    task = Task(
        dataset=samples,
        solver=generate(),
        scorer=includes(),
        config=GenerateConfig(max_tokens=args.max_tokens),
    )
    options: dict[str, int] = {}
    if args.max_connections is not None:
        options["max_connections"] = args.max_connections

    # The provider reads PEER_API_KEY and PEER_BASE_URL for the model "openai-api/peer/...".
    os.environ.setdefault("PEER_API_KEY", "bench-key")
    started = time.perf_counter()
    [log] = eval(
        task,
        model="openai-api/peer/bench-model",
        display="none",
        log_dir=str(args.log_dir),
        log_samples=True,
        **options,
    )
    seconds = time.perf_counter() - started

    samples_done = log.samples or []
    accuracy = None
    if log.results and log.results.scores:
        metric = log.results.scores[0].metrics.get("accuracy")
        accuracy = metric.value if metric else None
    errors = sum(1 for sample in samples_done if sample.error)
    print(
        json.dumps(
            {
                "status": log.status,
                "seconds": seconds,
                "samples": len(samples_done),
                "errors": errors,
                "accuracy": accuracy,
            }
        )
    )


if __name__ == "__main__":
    main()
