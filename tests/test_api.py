"""The evaluation API's contract: response shapes, paths, pagination and 404s."""

from __future__ import annotations

import uuid

import pytest

from llmeval.api.serializers import SubmittedSerializer, submitted_body
from llmeval.evaluations.models import Evaluation, Status

pytestmark = pytest.mark.django_db


def make_evaluation(owner, **fields) -> Evaluation:
    values = {
        "owner": owner,
        "input_prompt": "hello",
        "model": "smollm2-135m-instruct",
        "max_new_tokens": 16,
        "temperature": 0.7,
        **fields,
    }
    return Evaluation.objects.create(**values)


def test_submit_returns_original_contract(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api_client.post(
            "/api/evaluate",
            {"input_prompt": "explain generators in python", "recipient_email": "dev@example.com"},
            format="json",
        )

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "status", "message"}
    assert body["status"] == "pending"
    assert body["message"] == "Evaluation request submitted successfully"
    assert response["Location"] == f"http://testserver/api/evaluate/{body['id']}"
    assert uuid.UUID(body["id"]).version == 7


@pytest.mark.parametrize("status", [Status.PENDING, Status.COMPLETED, Status.FAILED])
def test_submitted_body_matches_schema_serializer(api_client, status):
    evaluation = make_evaluation(api_client.user, status=status)

    assert submitted_body(evaluation) == SubmittedSerializer(evaluation).data


def test_submit_applies_defaults(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        body = api_client.post("/api/evaluate/", {"input_prompt": "hi"}, format="json").json()

    evaluation = Evaluation.objects.get(pk=body["id"])
    assert evaluation.model == "smollm2-135m-instruct"
    assert evaluation.max_new_tokens == 256
    assert evaluation.temperature == 0.7
    assert evaluation.seed is None
    assert not hasattr(evaluation, "notification")


@pytest.mark.parametrize("path", ["/api/evaluate", "/api/evaluate/"])
def test_submit_with_and_without_slash(api_client, django_capture_on_commit_callbacks, path):
    with django_capture_on_commit_callbacks(execute=False):
        response = api_client.post(path, {"input_prompt": "hi"}, format="json")

    assert response.status_code == 202


@pytest.mark.parametrize("suffix", ["", "/"])
def test_detail_with_and_without_slash(api_client, suffix):
    evaluation = make_evaluation(api_client.user)

    response = api_client.get(f"/api/evaluate/{evaluation.id}{suffix}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(evaluation.id)
    assert body["status"] == "pending"
    assert body["message"] == "Evaluation request submitted successfully"
    expected_keys = {
        "input_prompt",
        "model",
        "response",
        "usage",
        "latency_ms",
        "error",
        "created_at",
        "started_at",
        "completed_at",
        "notification",
    }
    assert expected_keys <= set(body)


@pytest.mark.parametrize("evaluation_id", [str(uuid.uuid4()), "not-a-uuid", "1", "%00"])
def test_unknown_or_malformed_id_is_json_404(api_client, evaluation_id):
    response = api_client.get(f"/api/evaluate/{evaluation_id}")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "No evaluation" in response.json()["detail"]


def test_unknown_api_path_is_json_404(api_client):
    response = api_client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json()["detail"].startswith("No API endpoint")


def test_list_is_newest_first_with_cursor(api_client):
    created = [
        make_evaluation(api_client.user, input_prompt=f"prompt {index}") for index in range(5)
    ]

    first = api_client.get("/api/evaluate?page_size=2").json()
    second = api_client.get(first["next"]).json()

    assert [item["id"] for item in first["results"]] == [str(e.id) for e in created[::-1][:2]]
    assert [item["id"] for item in second["results"]] == [str(e.id) for e in created[::-1][2:4]]
    assert "count" not in first


@pytest.mark.parametrize("suffix", ["", "/"])
def test_list_filters_by_status(api_client, suffix):
    make_evaluation(api_client.user, status=Status.COMPLETED)
    pending = make_evaluation(api_client.user)

    body = api_client.get(f"/api/evaluate{suffix}?status=pending").json()

    assert [item["id"] for item in body["results"]] == [str(pending.id)]


def test_list_rejects_unknown_status(api_client):
    response = api_client.get("/api/evaluate?status=done")

    assert response.status_code == 400
    assert "status" in response.json()


@pytest.mark.parametrize("path", ["/api/models", "/api/models/"])
def test_models_lists_registered_models(api_client, path):
    body = api_client.get(path).json()

    names = {model["name"] for model in body["results"]}
    assert {"smollm2-135m-instruct", "google/gemma-2-2b-it"} <= names
    assert body["default"] == "smollm2-135m-instruct"
    local = next(model for model in body["results"] if model["name"] == "smollm2-135m-instruct")
    assert local["provider"] == "llamacpp"
    assert local["queue"] == "generate.local"


def test_method_not_allowed_is_json(api_client):
    response = api_client.delete("/api/evaluate")

    assert response.status_code == 405
    assert "detail" in response.json()


def test_chunked_body_is_411(api_client):
    response = api_client.post(
        "/api/evaluate",
        b'{"input_prompt": "hi"}',
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert response.status_code == 411
    assert "Content-Length" in response.json()["detail"]
    assert Evaluation.objects.count() == 0


def test_disallowed_host_is_json_400(api_client):
    response = api_client.get("/api/evaluate", HTTP_HOST="attacker.example")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


@pytest.mark.parametrize("cursor", ["garbage", "cD1ub3QtYS11dWlk"])
def test_invalid_cursor_is_400(api_client, cursor):
    response = api_client.get(f"/api/evaluate?cursor={cursor}")

    assert response.status_code == 400
    assert "cursor" in response.json()


def test_non_api_404_stays_html(client):
    response = client.get("/not-an-api-path")

    assert response.status_code == 404
    assert "text/html" in response["Content-Type"]


def test_hugging_face_model_without_token_is_400(api_client, settings):
    settings.HF_TOKEN = None

    response = api_client.post(
        "/api/evaluate", {"input_prompt": "hi", "model": "google/gemma-2-2b-it"}, format="json"
    )

    assert response.status_code == 400
    assert "HF_TOKEN is not set" in response.json()["model"][0]
    assert Evaluation.objects.count() == 0
