"""A fake Resend API on 127.0.0.1, for the email benchmark and the tests.

It follows Resend's wire format for what the service uses:

- ``POST /emails`` takes one email, ``POST /emails/batch`` a JSON array of 1 to
  100. Both need ``Authorization: Bearer <key>``. A batch is validated whole
  first (Resend's default strict mode): one invalid email rejects it with 422
  and nothing is sent. The responses are ``{"id": ...}`` and
  ``{"data": [{"id": ...}, ...]}``, with the ids in the order of the request.
- ``Idempotency-Key``: a repeat with the same body returns the first response and
  sends nothing; a repeat with another body gets 409 ``invalid_idempotent_request``.
- A rate limit per API key (a team), 2 requests per second by default, counted
  over a sliding second: above it the response is 429 ``rate_limit_exceeded`` with
  ``retry-after`` and ``ratelimit-*`` headers.

``GET /stats`` returns the counters, including how many emails were delivered,
how many distinct evaluations they were about (read from the result link in
the text) and the largest number of requests seen within one second.

Run it alone (``python bench/fake_resend.py --help``) or embed it::

    server = FakeResendServer(FakeResendApi(rate_limit=2)).start()
    ...  # the backend's api_url is server.url + "/"
    server.stop()
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
BATCH_LIMIT = 100
DEFAULT_RATE_LIMIT = 2
DEFAULT_DURATION_SECONDS = 600
ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
RESULT_LINK = re.compile(r"/api/evaluate/([0-9a-fA-F-]{36})")

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass(slots=True)
class DeliveredEmail:
    id: str
    to: list[str]
    subject: str
    evaluation_id: str | None
    request_index: int


@dataclass(slots=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    received_at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeResendApi:
    """The responses of Resend's API, without the HTTP server. Thread-safe."""

    def __init__(
        self, *, rate_limit: int = DEFAULT_RATE_LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_limit = rate_limit
        self.clock = clock
        self.requests: list[ReceivedRequest] = []
        self.delivered: list[DeliveredEmail] = []
        self.rejected_429 = 0
        self.replayed = 0
        self.max_per_second = 0
        self._windows: dict[str, deque[float]] = {}
        self._answers: dict[str, tuple[str, Answer]] = {}
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """Return the status, body and headers for one request (lower-case header names)."""
        with self._lock:
            request = ReceivedRequest(path, headers, body)
            if path != "/stats":
                self.requests.append(request)
            answer = self._answer(method, path, headers, body)
            request.status = answer[0]
            return answer

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self._stats()

    def _stats(self) -> dict[str, int]:
        evaluations = {email.evaluation_id for email in self.delivered if email.evaluation_id}
        return {
            "requests": len(self.requests),
            "batch_requests": sum(1 for r in self.requests if r.path == "/emails/batch"),
            "rejected_429": self.rejected_429,
            "replayed": self.replayed,
            "emails_delivered": len(self.delivered),
            "distinct_evaluations": len(evaluations),
            "max_requests_in_one_second": self.max_per_second,
        }

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method == "GET" and path == "/stats":
            return 200, self._stats(), {}
        if method != "POST" or path not in ("/emails", "/emails/batch"):
            return _error(404, "not_found", "The requested endpoint does not exist.")
        api_key = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not api_key:
            return _error(401, "missing_api_key", "Missing API key in the authorization header.")

        limited = self._take_rate_slot(api_key)
        if limited is not None:
            return limited

        key = headers.get("idempotency-key")
        fingerprint = hashlib.sha256(path.encode() + b"\n" + body).hexdigest()
        if key:
            previous = self._answers.get(key)
            if previous is not None:
                if previous[0] != fingerprint:
                    return _error(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    )
                self.replayed += 1
                return previous[1]

        answer = self._send(path, body)
        if key and answer[0] == 200:
            self._answers[key] = (fingerprint, answer)
        return answer

    def _take_rate_slot(self, api_key: str) -> Answer | None:
        now = self.clock()
        window = self._windows.setdefault(api_key, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            self.rejected_429 += 1
            reset = max(0.0, window[0] + 1.0 - now)
            status, body, _ = _error(
                429,
                "rate_limit_exceeded",
                f"Too many requests. You can only make {self.rate_limit} requests per second.",
            )
            return (
                status,
                body,
                {
                    "retry-after": str(max(1, round(reset + 0.5))),
                    "ratelimit-limit": str(self.rate_limit),
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": str(max(1, round(reset + 0.5))),
                },
            )
        window.append(now)
        self.max_per_second = max(self.max_per_second, len(window))
        return None

    def _send(self, path: str, body: bytes) -> Answer:
        try:
            parsed = json.loads(body)
        except ValueError:
            return _error(400, "invalid_json", "The request body is not valid JSON.")
        if path == "/emails":
            problem = _invalid_email(parsed)
            if problem:
                return _error(422, "validation_error", problem)
            return 200, {"id": self._deliver(parsed)}, {}

        if not isinstance(parsed, list) or not parsed:
            return _error(422, "validation_error", "The batch must be a non-empty array.")
        if len(parsed) > BATCH_LIMIT:
            return _error(422, "validation_error", f"A batch holds at most {BATCH_LIMIT} emails.")
        for index, email in enumerate(parsed):
            problem = _invalid_email(email)
            if problem:
                return _error(422, "validation_error", f"emails[{index}]: {problem}")
        return 200, {"data": [{"id": self._deliver(email)} for email in parsed]}, {}

    def _deliver(self, email: dict[str, Any]) -> str:
        email_id = str(uuid.uuid4())
        to = email["to"] if isinstance(email["to"], list) else [email["to"]]
        link = RESULT_LINK.search(str(email.get("text") or email.get("html") or ""))
        self.delivered.append(
            DeliveredEmail(
                id=email_id,
                to=to,
                subject=email["subject"],
                evaluation_id=link.group(1) if link else None,
                request_index=len(self.requests) - 1,
            )
        )
        return email_id


def _invalid_email(email: Any) -> str | None:
    if not isinstance(email, dict):
        return "Each email must be an object."
    for name in ("from", "to", "subject"):
        if not email.get(name):
            return f"The `{name}` field is missing."
    to = email["to"] if isinstance(email["to"], list) else [email["to"]]
    if not 1 <= len(to) <= 50 or not all(isinstance(a, str) and ADDRESS.match(a) for a in to):
        return (
            "Invalid `to` field. The email address needs to follow the `email@example.com` format."
        )
    if not (email.get("text") or email.get("html")):
        return "Missing `html` or `text` field."
    return None


def _error(status: int, name: str, message: str) -> Answer:
    return status, {"statusCode": status, "name": name, "message": message}, {}


class FakeResendServer:
    """Serve a FakeResendApi over HTTP/1.1 on 127.0.0.1, from a daemon thread."""

    def __init__(self, api: FakeResendApi, port: int = 0) -> None:
        self.api = api
        self._server = ThreadingHTTPServer((HOST, port), _handler_class(api))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> FakeResendServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(api: FakeResendApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._respond("GET")

        def do_POST(self) -> None:
            self._respond("POST")

        def _respond(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, payload, extra = api.handle(method, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Serve a fake Resend API on 127.0.0.1. Prints 'listening on URL' first "
        "and the counters when it stops."
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one.")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT,
        help=f"Requests per second per API key (default {DEFAULT_RATE_LIMIT}).",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=DEFAULT_DURATION_SECONDS,
        help=f"Seconds after which the server stops (default {DEFAULT_DURATION_SECONDS}).",
    )
    args = parser.parse_args()
    server = FakeResendServer(FakeResendApi(rate_limit=args.rate_limit), args.port).start()
    print(f"listening on {server.url}", flush=True)
    try:
        time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print(f"stopped: {json.dumps(server.api.stats())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
