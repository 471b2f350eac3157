"""The main job end to end: API, PostgreSQL, a real worker process, the real local model, email."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def emails_for(outbox, evaluation_id: str) -> list[str]:
    if not outbox.exists():
        return []
    texts = [path.read_text(encoding="utf-8") for path in outbox.iterdir()]
    return [text for text in texts if evaluation_id in text]


def test_local_model_evaluation_completes(
    api_client, worker, wait_until_finished, wait_until_notified, outbox
):
    response = api_client.post(
        "/api/evaluate",
        {
            "input_prompt": "explain generators in python",
            "recipient_email": "dev@example.com",
            "max_new_tokens": 48,
            "seed": 1,
        },
        format="json",
    )
    assert response.status_code == 202
    evaluation_id = response.json()["id"]

    wait_until_finished(evaluation_id)
    wait_until_notified(evaluation_id)
    result = api_client.get(f"/api/evaluate/{evaluation_id}").json()

    assert result["status"] == "completed", result["error"]
    assert result["message"] == "Evaluation completed"
    assert result["model"] == "smollm2-135m-instruct"
    assert len(result["response"].split()) >= 5
    assert result["usage"]["input_tokens"] > 0
    assert 0 < result["usage"]["output_tokens"] <= 48
    assert result["latency_ms"] > 0
    assert result["attempts"] == 1
    assert result["started_at"] is not None
    assert result["completed_at"] is not None

    assert result["notification"]["status"] == "sent"
    emails = emails_for(outbox, evaluation_id)
    assert len(emails) == 1
    assert "To: dev@example.com" in emails[0]
    assert "explain generators in python" in emails[0]


def test_same_seed_gives_same_answer(api_client, worker, wait_until_finished):
    body = {"input_prompt": "Name a colour.", "max_new_tokens": 16, "seed": 42, "temperature": 0.8}
    ids = [api_client.post("/api/evaluate", body, format="json").json()["id"] for _ in range(2)]

    first, second = (wait_until_finished(evaluation_id) for evaluation_id in ids)

    assert first.status == "completed"
    assert second.status == "completed"
    assert first.response == second.response


def test_evaluation_without_recipient_sends_no_email(
    api_client, worker, wait_until_finished, outbox
):
    response = api_client.post(
        "/api/evaluate", {"input_prompt": "Say hello.", "max_new_tokens": 8}, format="json"
    )
    evaluation_id = response.json()["id"]

    evaluation = wait_until_finished(evaluation_id)

    assert evaluation.status == "completed"
    assert api_client.get(f"/api/evaluate/{evaluation_id}").json()["notification"] is None
    assert emails_for(outbox, evaluation_id) == []


def test_missing_seed_is_drawn_and_stored(api_client, worker, wait_until_finished):
    body = {"input_prompt": "Name a colour.", "max_new_tokens": 12, "temperature": 1.0}
    ids = [api_client.post("/api/evaluate", body, format="json").json()["id"] for _ in range(2)]

    first, second = (wait_until_finished(evaluation_id) for evaluation_id in ids)

    assert first.seed is not None
    assert second.seed is not None
    assert first.seed != second.seed
