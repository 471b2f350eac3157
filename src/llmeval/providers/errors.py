"""Provider errors, each carrying its own retry decision."""

from __future__ import annotations

MAX_BODY_EXCERPT = 500


class ProviderError(Exception):
    """A model call failed.

    ``permanent`` is the retry decision: a permanent error fails the evaluation at
    once, a transient one is retried. The message never contains a credential.
    """

    permanent = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        request_id: str = "",
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.body = body[:MAX_BODY_EXCERPT]
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"{self.provider}: {self.message}"]
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        if self.request_id:
            parts.append(f"[request id {self.request_id}]")
        return " ".join(parts)


class TransientProviderError(ProviderError):
    """A failure that may pass: timeouts, connection errors, rate limits, 5xx, model loading."""


class PermanentProviderError(ProviderError):
    """A failure that a retry cannot fix: bad request, bad credentials, unknown model."""

    permanent = True
