"""Email backends with the additions this service needs."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin

from anymail.backends.resend import EmailBackend as AnymailResendBackend
from django.core.mail import EmailMessage

logger = logging.getLogger(__name__)

# Resend's POST /emails/batch takes at most this many emails per request.
RESEND_BATCH_LIMIT = 100


class ResendEmailBackend(AnymailResendBackend):  # type: ignore[misc]
    """django-anymail's Resend backend, with Resend's idempotency keys and batch endpoint.

    Resend returns the original response for a repeated ``Idempotency-Key``
    instead of sending the email again, so a retry after a lost response cannot
    send twice. ``send_messages`` reads the key from the message's
    ``idempotency_key`` attribute; ``send_batch`` takes one key for the batch.
    """

    batch_limit = RESEND_BATCH_LIMIT

    def build_message_payload(self, message: Any, defaults: Any) -> Any:
        payload = super().build_message_payload(message, defaults)
        key = getattr(message, "idempotency_key", None)
        if key:
            payload.headers["Idempotency-Key"] = key
        return payload

    def check_message(self, message: EmailMessage) -> None:
        """Raise anymail's error for a message this backend cannot send, as sending would."""
        self.build_message_payload(message, self.send_defaults)

    def send_batch(self, messages: Sequence[EmailMessage], idempotency_key: str) -> list[str]:
        """Send up to 100 messages in one request; return Resend's ids in the same order.

        Resend validates the whole batch first (its default strict mode), so an
        error response means none of the messages was sent. Errors are raised as
        anymail's ``AnymailRequestsAPIError``, as ``send_messages`` raises them.
        A 2xx response means Resend accepted the batch: if its ids cannot be
        read, they are returned as "" and a warning is logged.
        """
        if not 0 < len(messages) <= self.batch_limit:
            raise ValueError(
                f"invalid batch size {len(messages)}: send 1 to {self.batch_limit} messages"
            )
        payloads = [self.build_message_payload(message, self.send_defaults) for message in messages]
        batch = _BatchPayload(payloads, idempotency_key)
        created = self.open()
        try:
            response = self.post_to_esp(batch, messages[0])
        finally:
            if created:
                self.close()
        try:
            ids = [str(item["id"]) for item in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            ids = []
        if len(ids) != len(messages):
            logger.warning(
                "resend.batch_ids_unreadable status=%s emails=%s ids=%s key=%s",
                response.status_code,
                len(messages),
                len(ids),
                idempotency_key,
            )
            return [""] * len(messages)
        return ids


class _BatchPayload:
    """The request for POST /emails/batch, built from one anymail payload per message.

    It offers the two things anymail's request code reads from a payload:
    ``get_request_params`` and ``serialize_data`` (used in error descriptions).
    """

    def __init__(self, payloads: Sequence[Any], idempotency_key: str) -> None:
        self.payloads = payloads
        self.headers = dict(payloads[0].headers)
        self.headers["Idempotency-Key"] = idempotency_key

    def serialize_data(self) -> str:
        return json.dumps([payload.data for payload in self.payloads], separators=(",", ":"))

    def get_request_params(self, api_url: str) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": urljoin(api_url, "emails/batch"),
            "headers": self.headers,
            "data": self.serialize_data().encode("utf-8"),
        }
