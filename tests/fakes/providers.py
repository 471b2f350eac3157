"""Replies in the wire formats of the Hugging Face router, OpenAI-compatible servers and Resend."""

from __future__ import annotations

import itertools
from typing import Any

from tests.fakes.http import RecordedRequest, Reply

_ids = itertools.count(1)


def chat_completion(
    text: str, *, prompt_tokens: int = 11, completion_tokens: int = 7, delay: float = 0.0
) -> Reply:
    """Build an OpenAI chat.completion body, the format the router and TGI return."""
    number = next(_ids)
    body: dict[str, Any] = {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": 1_765_000_000,
        "model": "fake-model",
        "system_fingerprint": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(status=200, body=body, headers={"X-Request-Id": f"req-{number}"}, delay=delay)


def answer_with(text: str) -> Any:
    def handler(request: RecordedRequest) -> Reply:
        return chat_completion(text)

    return handler


def answer_in_sequence(*replies: Reply) -> Any:
    """Return the replies in order, repeating the last one."""
    remaining = list(replies)

    def handler(request: RecordedRequest) -> Reply:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return handler


def resend_accepted(request: RecordedRequest) -> Reply:
    return Reply(status=200, body={"id": f"resend-{next(_ids)}"})
