"""Render the completion email of an evaluation, as plain text and HTML."""

from __future__ import annotations

import unicodedata

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from llmeval.evaluations.models import Evaluation
from llmeval.notifications.models import Notification
from llmeval.text import excerpt

PROMPT_EXCERPT_CHARS = 300
RESPONSE_EXCERPT_CHARS = 1500
SUBJECT_PROMPT_CHARS = 60


def subject_text(prompt: str) -> str:
    """Turn a prompt into one safe line for the Subject header.

    Control and format characters go, and "=?" is broken up: Python before
    3.12.5 decodes an RFC 2047 encoded word in a header and can write the line
    breaks it holds back out, which would let a prompt add headers.
    """
    printable = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in prompt)
    line = " ".join(printable.split()).replace("=?", "= ?")
    return excerpt(line, SUBJECT_PROMPT_CHARS)


def build_message(notification: Notification) -> EmailMultiAlternatives:
    evaluation: Evaluation = notification.evaluation
    context = {
        "evaluation": evaluation,
        "status": evaluation.status,
        "prompt_excerpt": excerpt(evaluation.input_prompt, PROMPT_EXCERPT_CHARS),
        "response_excerpt": excerpt(evaluation.response, RESPONSE_EXCERPT_CHARS),
        "result_url": f"{settings.PUBLIC_BASE_URL}/api/evaluate/{evaluation.id}",
    }
    subject = f"Evaluation {evaluation.status}: {subject_text(evaluation.input_prompt)}"

    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/evaluation_finished.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.recipient],
    )
    message.attach_alternative(
        render_to_string("notifications/evaluation_finished.html", context), "text/html"
    )
    # Read by ResendEmailBackend; other backends ignore it.
    message.idempotency_key = notification.idempotency_key  # type: ignore[attr-defined]
    return message
