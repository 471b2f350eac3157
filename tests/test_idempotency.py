"""POST /api/evaluate with an Idempotency-Key: a retried request returns the original evaluation."""

from __future__ import annotations

import pytest

from llmeval.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db

BODY = {"input_prompt": "explain generators in python", "recipient_email": "dev@example.com"}


def post(api_client, body, key=None):
    headers = {} if key is None else {"Idempotency-Key": key}
    return api_client.post("/api/evaluate", body, format="json", headers=headers)


def test_same_key_and_body_returns_original(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(api_client, BODY, key="order-42")
        second = post(api_client, dict(reversed(list(BODY.items()))), key="order-42")

    assert first.status_code == 202
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert Evaluation.objects.count() == 1
    assert len(callbacks) == 1


def test_same_key_other_body_is_409(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        post(api_client, BODY, key="order-43")
        response = post(api_client, {**BODY, "input_prompt": "something else"}, key="order-43")

    assert response.status_code == 409
    assert "order-43" in response.json()["detail"]
    assert Evaluation.objects.count() == 1


def test_without_key_each_post_is_new(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        post(api_client, BODY)
        post(api_client, BODY)

    assert Evaluation.objects.count() == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "caf\u00e9"])
def test_invalid_key_is_400(api_client, key):
    response = post(api_client, BODY, key=key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert Evaluation.objects.count() == 0
