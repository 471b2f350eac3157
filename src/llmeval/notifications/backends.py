"""Email backends with the additions this service needs."""

from __future__ import annotations

from typing import Any

from anymail.backends.resend import EmailBackend as AnymailResendBackend


class ResendEmailBackend(AnymailResendBackend):  # type: ignore[misc]
    """django-anymail's Resend backend that also sends Resend's ``Idempotency-Key`` header.

    Resend returns the original response for a repeated key instead of sending
    the email again, so a retry after a lost response cannot send twice. The key
    is read from the message's ``idempotency_key`` attribute.
    """

    def build_message_payload(self, message: Any, defaults: Any) -> Any:
        payload = super().build_message_payload(message, defaults)
        key = getattr(message, "idempotency_key", None)
        if key:
            payload.headers["Idempotency-Key"] = key
        return payload
