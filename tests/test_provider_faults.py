"""Provider failures end in a definite state: retried when transient, failed at once when not."""

from __future__ import annotations

import pytest

from tests.fakes.http import RecordedRequest, RecordingServer, Reply
from tests.fakes.providers import answer_in_sequence, chat_completion

pytestmark = pytest.mark.django_db(transaction=True)

LOADING = Reply(status=503, body={"error": "Model is currently loading", "estimated_time": 0.5})


def submit(api_client, prompt: str = "What is 2 + 2?") -> str:
    body = {"input_prompt": prompt, "model": "google/gemma-2-2b-it", "max_new_tokens": 16}
    response = api_client.post("/api/evaluate", body, format="json")
    assert response.status_code == 202, response.json()
    evaluation_id: str = response.json()["id"]
    return evaluation_id


def test_loading_twice_then_answer(api_client, worker, fake_provider, wait_until_finished):
    fake_provider.reset(answer_in_sequence(LOADING, LOADING, chat_completion("Four.")))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "completed", evaluation.error
    assert evaluation.response == "Four."
    assert evaluation.attempts == 3
    assert len(fake_provider.recorded()) == 3


def test_rate_limited_waits_for_retry_after(api_client, worker, fake_provider, wait_until_finished):
    limited = Reply(status=429, body={"error": "rate limited"}, headers={"Retry-After": "3"})
    fake_provider.reset(answer_in_sequence(limited, chat_completion("Four.")))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "completed", evaluation.error
    first, second = fake_provider.recorded()
    assert second.received_at - first.received_at >= 3.0


def test_rate_limited_without_retry_after(api_client, worker, fake_provider, wait_until_finished):
    limited = Reply(status=429, body={"error": "rate limited"})
    fake_provider.reset(answer_in_sequence(limited, chat_completion("Four.")))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "completed", evaluation.error
    assert evaluation.attempts == 2


def test_unavailable_forever_gives_up(api_client, worker, fake_provider, wait_until_finished):
    fake_provider.reset(lambda request: Reply(status=503, body={"error": "upstream down"}))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "failed"
    assert "gave up after 3 attempts" in evaluation.error
    assert "HTTP 503" in evaluation.error
    assert len(fake_provider.recorded()) == 3


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "rejected the request as invalid"),
        (401, "check HF_TOKEN"),
        (403, "not allowed to use this model"),
        (404, "model not found at this provider: check the model name"),
        (410, "no longer served"),
        (422, "could not process the request parameters"),
    ],
)
def test_client_errors_fail_at_once(
    api_client, worker, fake_provider, wait_until_finished, status, message
):
    fake_provider.reset(lambda request: Reply(status=status, body={"error": "nope"}))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "failed"
    assert message in evaluation.error
    assert evaluation.attempts == 1
    assert len(fake_provider.recorded()) == 1


def test_context_overflow_message(api_client, worker, fake_provider, wait_until_finished):
    body = {"error": "This model's maximum context length is 8192 tokens"}
    fake_provider.reset(lambda request: Reply(status=400, body=body))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "failed"
    assert "longer than the model's context window" in evaluation.error


MALFORMED = [
    ("list body", Reply(body=[{"generated_text": "Four."}]), "not a chat completion"),
    ("error with 200", Reply(body={"error": "Invalid credentials"}), "error with HTTP 200"),
    ("no choices", Reply(body={"id": "x", "choices": []}), "no choices"),
    (
        "choice without message",
        Reply(body={"id": "x", "choices": [{"index": 0}]}),
        "without a message",
    ),
    (
        "html body",
        Reply(raw=b"<html>502</html>", headers={"Content-Type": "text/html"}),
        "not JSON",
    ),
    ("empty body", Reply(raw=b""), "not JSON"),
]


@pytest.mark.parametrize(
    ("reply", "message"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_answer_fails_readably(
    api_client, worker, fake_provider, wait_until_finished, reply, message
):
    fake_provider.reset(lambda request: reply)

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "failed"
    assert message in evaluation.error
    assert len(fake_provider.recorded()) == 1


def test_busy_error_with_200_is_retried(api_client, worker, fake_provider, wait_until_finished):
    busy = Reply(body={"error": "Model too busy, try again later"})
    fake_provider.reset(answer_in_sequence(busy, chat_completion("Four.")))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "completed", evaluation.error
    assert evaluation.attempts == 2


def test_content_parts_are_joined(api_client, worker, fake_provider, wait_until_finished):
    reply = chat_completion("")
    reply.body["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "Fo"},
        {"type": "text", "text": "ur."},
    ]
    fake_provider.reset(lambda request: reply)

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.response == "Four."


def test_echoed_prompt_is_removed(api_client, worker, fake_provider, wait_until_finished):
    prompt = "Explain what a Python generator is."

    def echo(request: RecordedRequest) -> Reply:
        return chat_completion(f"{prompt}\nA function that yields values lazily.")

    fake_provider.reset(echo)

    evaluation = wait_until_finished(submit(api_client, prompt))

    assert evaluation.response == "A function that yields values lazily."


def test_nul_and_lone_surrogate_are_stored_safely(
    api_client, worker, fake_provider: RecordingServer, wait_until_finished
):
    raw = (
        b'{"id": "x", "choices": [{"index": 0, "finish_reason": "stop", '
        b'"message": {"role": "assistant", "content": "a\\u0000b\\ud800c"}}]}'
    )
    fake_provider.reset(lambda request: Reply(raw=raw))

    evaluation = wait_until_finished(submit(api_client))

    assert evaluation.status == "completed", evaluation.error
    assert evaluation.response == "ab?c"
