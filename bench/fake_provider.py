"""A fake chat-completion server for load tests of the remote-model path.

It speaks the wire format of the OpenAI chat-completion API, which the Hugging
Face router and OpenAI-compatible servers share: ``POST /v1/chat/completions``
(or ``/chat/completions``) returns a ``chat.completion`` after a fixed latency.
One asyncio event loop serves every connection, so thousands of requests can
wait at once. With ``--max-concurrency`` it responds with 429 above that many
requests in flight, as a provider's concurrency limit does.

``GET /stats`` returns the counters and ``POST /reset`` zeroes them. Run it
alone (``python bench/fake_provider.py --help``) or embed it::

    provider = FakeProvider(latency_ms=50)
    url = provider.run_in_thread()  # then use base_url = url + "/v1"
    ...
    provider.stop_thread()
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

logger = logging.getLogger("fake_provider")

HOST = "127.0.0.1"
DEFAULT_LATENCY_MS = 500
DEFAULT_TOKENS = 32
# The kernel caps the backlog at net.core.somaxconn (4096 by default since Linux 5.4).
DEFAULT_BACKLOG = 4096
DEFAULT_DURATION_SECONDS = 600
THREAD_START_TIMEOUT_SECONDS = 10
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@dataclass(slots=True)
class ProviderStats:
    """Counters of chat-completion requests since the start or the last reset."""

    requests: int = 0
    completed: int = 0
    rejected_429: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


class FakeProvider:
    """An aiohttp server that returns canned chat completions after ``latency_ms``.

    Every response has ``tokens`` words of content, or ``max_tokens`` words when
    the request sets fewer (then ``finish_reason`` is ``length``). The usage
    counts one token per whitespace-separated word.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        latency_ms: int = DEFAULT_LATENCY_MS,
        tokens: int = DEFAULT_TOKENS,
        max_concurrency: int | None = None,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        self.port = port
        self.latency_ms = latency_ms
        self.tokens = tokens
        self.max_concurrency = max_concurrency
        self.backlog = backlog
        self.stats = ProviderStats()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> str:
        """Bind 127.0.0.1 (port 0 picks a free port), start serving and return the URL."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completion)
        app.router.add_post("/chat/completions", self._chat_completion)
        app.router.add_get("/stats", self._get_stats)
        app.router.add_post("/reset", self._reset)

        # Binding the socket here, not in aiohttp, gives the chosen port before serving.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        self.port = sock.getsockname()[1]

        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, backlog=self.backlog)
        await site.start()
        return self.url

    async def stop(self) -> None:
        """Close the listening socket and every open connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def run_in_thread(self) -> str:
        """Serve from a daemon thread with its own event loop; return the URL once it listens."""
        started = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                errors.append(exc)
                started.set()
                raise
            started.set()
            try:
                await self._stop_event.wait()
            finally:
                await self.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="fake-provider", daemon=True
        )
        self._thread.start()
        if not started.wait(THREAD_START_TIMEOUT_SECONDS):
            raise TimeoutError(
                f"the fake provider did not start within {THREAD_START_TIMEOUT_SECONDS} s"
            )
        if errors:
            raise errors[0]
        return self.url

    def stop_thread(self, timeout: float = THREAD_START_TIMEOUT_SECONDS) -> None:
        """Stop a server started by ``run_in_thread`` and wait for its thread to end."""
        if self._thread is None or self._loop is None or self._stop_event is None:
            return
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        self._thread = None

    def reset_stats(self) -> None:
        # Requests still waiting keep being counted as in flight.
        self.stats = ProviderStats(in_flight=self.stats.in_flight)

    async def _chat_completion(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        if self.max_concurrency is not None and self.stats.in_flight >= self.max_concurrency:
            self.stats.rejected_429 += 1
            return _error_response(
                429,
                f"Rate limit reached: at most {self.max_concurrency} requests may be in "
                "flight. Try again later.",
                "rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )

        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.stats.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            logger.warning("fake_provider.invalid_json path=%s error=%s", request.path, exc)
            return _error_response(400, "The request body is not valid JSON.", "invalid_json")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            logger.warning("fake_provider.invalid_messages path=%s", request.path)
            return _error_response(
                400, "'messages' is required and must be a non-empty list.", "invalid_messages"
            )

        await asyncio.sleep(self.latency_ms / 1000)

        completion = self._completion(body, messages)
        self.stats.completed += 1
        return web.json_response(completion)

    def _completion(self, body: dict[str, Any], messages: list[Any]) -> dict[str, Any]:
        max_tokens = body.get("max_tokens")
        count = self.tokens
        finish_reason = "stop"
        if isinstance(max_tokens, int) and 0 < max_tokens < count:
            count = max_tokens
            finish_reason = "length"
        prompt_tokens = sum(
            len(str(message.get("content", "")).split())
            for message in messages
            if isinstance(message, dict)
        )

        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or "fake-model"),
            "system_fingerprint": "fake-provider",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _words(count)},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": count,
                "total_tokens": prompt_tokens + count,
            },
        }

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response(asdict(self.stats))


def _words(count: int) -> str:
    return " ".join(WORDS[index % len(WORDS)] for index in range(count))


def _error_response(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Build an error in the OpenAI shape: ``{"error": {message, type, param, code}}``."""
    error_type = "requests" if status == 429 else "invalid_request_error"
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to the hard limit; return the new limit.

    Each connection is one file descriptor, and the usual soft limit of 1024 is
    below the thousands of connections this server is meant to hold.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve fake OpenAI-style chat completions on 127.0.0.1 for load tests. "
        "Prints 'listening on http://127.0.0.1:PORT' first, and the request counters "
        "and the share of 429 answers when it stops."
    )
    parser.add_argument(
        "--host",
        default=HOST,
        choices=[HOST],
        help="Address to bind; only 127.0.0.1 is accepted.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port; 0 (the default) picks a free one."
    )
    parser.add_argument(
        "--latency-ms",
        type=_non_negative_int,
        default=DEFAULT_LATENCY_MS,
        help=f"Milliseconds before each response (default {DEFAULT_LATENCY_MS}).",
    )
    parser.add_argument(
        "--tokens",
        type=_positive_int,
        default=DEFAULT_TOKENS,
        help=f"Completion tokens (words) per response (default {DEFAULT_TOKENS}).",
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=None,
        help="Requests in flight above which the response is 429 with Retry-After: 1 "
        "(default: no limit).",
    )
    parser.add_argument(
        "--backlog",
        type=_positive_int,
        default=DEFAULT_BACKLOG,
        help=f"Listen backlog, capped by net.core.somaxconn (default {DEFAULT_BACKLOG}).",
    )
    parser.add_argument(
        "--duration",
        type=_positive_int,
        default=DEFAULT_DURATION_SECONDS,
        help="Seconds after which the server stops by itself "
        f"(default {DEFAULT_DURATION_SECONDS}); SIGINT or SIGTERM stop it earlier.",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


async def serve(args: argparse.Namespace) -> ProviderStats:
    """Serve until --duration passes or a stop signal arrives; return the final counters."""
    provider = FakeProvider(
        port=args.port,
        latency_ms=args.latency_ms,
        tokens=args.tokens,
        max_concurrency=args.max_concurrency,
        backlog=args.backlog,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    url = await provider.start()
    print(f"listening on {url}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except TimeoutError:
        pass
    finally:
        await provider.stop()
    return provider.stats


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    raise_open_file_limit()
    stats = asyncio.run(serve(args))

    share = stats.rejected_429 / stats.requests if stats.requests else 0.0
    print(
        f"stopped: requests={stats.requests} completed={stats.completed} "
        f"rejected_429={stats.rejected_429} max_in_flight={stats.max_in_flight} "
        f"ratio rejected_429/requests={share:.3f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
