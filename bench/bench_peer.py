"""Peer benchmark: the same prompts through Inspect AI and through this service.

Both sides send the same ``--prompts`` prompts (default 500) to the same fake
provider (bench/fake_provider.py: answers after L = 500 ms, 429 above C = 64
requests in flight) and score each answer for the word it always contains.
Inspect AI runs twice, at its default settings and with ``max_connections``
equal to C; this service runs once, with the model's ``max_concurrency`` set to
C. Each side gets a fresh fake provider, so its counters are its own. Prints
evaluations per second of each run and this service's ratio to each.

Inspect AI is installed from PyPI, at the versions below, into a virtual
environment of its own under ``bench/.venv-inspect`` (made on the first run).
It runs with its proxy settings pointed at a closed port on 127.0.0.1, with
127.0.0.1 exempted, so a request to any other host fails at once instead of
leaving the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

BENCH = Path(__file__).resolve().parent
PEER_VENV = BENCH / ".venv-inspect"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_PACKAGES = ("inspect-ai==0.3.285", "openai==3.63.0")
# Port 9 (discard) on 127.0.0.1 is closed here: a connection attempt is refused at once.
CLOSED_PROXY = "http://127.0.0.1:9"
MODEL = "bench-remote"
TARGET = "alpha"
TOPICS = (
    "the water cycle", "prime numbers", "photosynthesis", "binary search", "plate tectonics",
    "supply and demand", "the French revolution", "black holes", "vaccines", "compound interest",
)  # fmt: skip
INSTALL_TIMEOUT_SECONDS = 900


def prompts(count: int) -> list[str]:
    return [
        f"Question {index + 1}: explain {TOPICS[index % len(TOPICS)]} in two sentences."
        for index in range(count)
    ]


def ensure_peer_venv() -> None:
    """Make the Inspect AI virtual environment unless it already has the pinned versions."""
    check = [
        str(PEER_PYTHON),
        "-c",
        "import importlib.metadata as m; print(m.version('inspect-ai'))",
    ]
    if PEER_PYTHON.exists():
        found = subprocess.run(check, capture_output=True, text=True, check=False)
        if found.returncode == 0 and f"inspect-ai=={found.stdout.strip()}" in PEER_PACKAGES:
            return
    print(f"installing {', '.join(PEER_PACKAGES)} into {PEER_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(PEER_PYTHON), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
        check=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )


def run_inspect(
    prompt_file: Path, workdir: Path, args: argparse.Namespace, max_connections: int | None
) -> dict[str, object]:
    fake, fake_url = start_fake_provider(args.latency_ms, args.concurrency, args.timeout + 60)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith("_API_KEY") and not name.startswith(("INSPECT_", "OPENAI_"))
    }
    env.update(
        PEER_BASE_URL=f"{fake_url}/v1",
        PEER_API_KEY="bench-key",
        HTTP_PROXY=CLOSED_PROXY,
        HTTPS_PROXY=CLOSED_PROXY,
        ALL_PROXY=CLOSED_PROXY,
        NO_PROXY="127.0.0.1,localhost",
        HF_HUB_OFFLINE="1",
    )
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        env[name.lower()] = env[name]
    argv = [str(PEER_PYTHON), str(BENCH / "peer_inspect.py"), str(prompt_file)]
    argv += ["--log-dir", str(workdir / "inspect-logs"), "--max-tokens", str(args.tokens)]
    if max_connections is not None:
        argv += ["--max-connections", str(max_connections)]
    try:
        result = subprocess.run(
            argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=args.timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"Inspect AI failed with exit code {result.returncode}:\n{result.stderr[-3000:]}"
            )
        outcome: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
        outcome["provider"] = provider_stats(fake_url)
    finally:
        fake.terminate()
        fake.wait(timeout=15)
    return outcome


def run_service(texts: list[str], workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    fake, fake_url = start_fake_provider(args.latency_ms, args.concurrency, args.timeout + 60)
    models = write_remote_model(workdir, MODEL, f"{fake_url}/v1", args.concurrency)
    stack = ServiceStack(
        database="llmeval_bench_peer",
        redis_db=8,
        workdir=workdir,
        extra_env={"LLMEVAL_MODELS_FILE": str(models)},
    )
    bodies: list[dict[str, object]] = [
        {
            "input_prompt": text,
            "model": MODEL,
            "max_new_tokens": args.tokens,
            "metrics": [{"name": "contains", "value": [TARGET], "ignore_case": True}],
        }
        for text in texts
    ]
    try:
        stack.prepare()
        stack.delete_evaluations()
        key = stack.create_api_key("bench")
        stack.start_api(workers=2)
        stack.start_remote_workers(args.concurrency, args.workers)
        time.sleep(3)

        started = time.monotonic()
        post_concurrently(stack.port, "/api/evaluate", bodies, key, len(bodies), args.clients)
        stack.wait_until_finished(len(bodies), started + args.timeout, poll_seconds=0.05)
        seconds = time.monotonic() - started
        failed = stack.count("status = 'failed'")
        passed = stack.count("passed")
        stats = provider_stats(fake_url)
    finally:
        stack.stop()
        fake.terminate()
        fake.wait(timeout=15)
    return {
        "seconds": seconds,
        "samples": len(bodies),
        "errors": failed,
        "accuracy": passed / len(bodies),
        "provider": stats,
    }


def describe(name: str, outcome: dict[str, object], count: int) -> float:
    seconds = float(outcome["seconds"])  # type: ignore[arg-type]
    rate = count / seconds
    provider: dict[str, int] = outcome["provider"]  # type: ignore[assignment]
    print(
        f"{name:<34} {rate:7.1f} evaluations/s  {seconds:6.1f} s  "
        f"errors {outcome['errors']}  accuracy {outcome['accuracy']}  "
        f"provider: {provider['requests']} requests, {provider['rejected_429']} answered 429, "
        f"max {provider['max_in_flight']} in flight"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts", type=int, default=500, help="prompts sent by each side (default 500)"
    )
    parser.add_argument("--latency-ms", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens of each request")
    parser.add_argument("--clients", type=int, default=16, help="submitting client threads")
    parser.add_argument("--workers", type=int, default=2, help="threads worker processes")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per run before giving up")
    args = parser.parse_args()

    ensure_peer_venv()
    workdir = Path(tempfile.mkdtemp(prefix="llmeval-bench-peer-"))
    texts = prompts(args.prompts)
    prompt_file = workdir / "prompts.json"
    prompt_file.write_text(json.dumps({"prompts": texts, "target": TARGET}))

    inspect_default = run_inspect(prompt_file, workdir, args, None)
    inspect_equal = run_inspect(prompt_file, workdir, args, args.concurrency)
    service = run_service(texts, workdir, args)

    ideal = args.concurrency / (args.latency_ms / 1000)
    print(
        f"peer benchmark: {args.prompts} prompts, L = {args.latency_ms} ms, "
        f"C = {args.concurrency}, ideal {ideal:.1f}/s"
    )
    default_rate = describe("Inspect AI, default settings", inspect_default, args.prompts)
    equal_rate = describe(
        f"Inspect AI, max_connections={args.concurrency}", inspect_equal, args.prompts
    )
    service_rate = describe("llmeval (API, queue, workers, DB)", service, args.prompts)
    print(f"ratio llmeval / Inspect AI default: {service_rate / default_rate:.2f}")
    print(f"ratio llmeval / Inspect AI at equal concurrency: {service_rate / equal_rate:.2f}")


if __name__ == "__main__":
    main()
