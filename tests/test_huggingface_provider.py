"""Remote models through InferenceClient, against a local fake chat-completion server."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import _detect_agent

from llmeval.providers import huggingface
from llmeval.providers.base import GenerationRequest
from llmeval.providers.registry import registry
from tests.conftest import FAKE_OPENAI_KEY
from tests.fakes.http import Reply
from tests.fakes.providers import answer_in_sequence, answer_with, chat_completion

pytestmark = pytest.mark.django_db(transaction=True)


def submit(api_client, **fields) -> str:
    body = {"input_prompt": "What is 2 + 2?", "max_new_tokens": 32, "temperature": 0.5, **fields}
    response = api_client.post("/api/evaluate", body, format="json")
    assert response.status_code == 202, response.json()
    evaluation_id: str = response.json()["id"]
    return evaluation_id


def test_router_request_and_stored_answer(api_client, worker, fake_provider, wait_until_finished):
    fake_provider.reset(answer_with("Four."))

    evaluation_id = submit(
        api_client, model="google/gemma-2-2b-it", seed=7, system_prompt="Answer briefly."
    )
    evaluation = wait_until_finished(evaluation_id)

    assert evaluation.status == "completed", evaluation.error
    assert evaluation.response == "Four."
    assert evaluation.input_tokens == 11
    assert evaluation.output_tokens == 7
    assert evaluation.provider_request_id.startswith("chatcmpl-")

    [request] = fake_provider.recorded()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer hf_test_token"
    body = request.json()
    assert body["model"] == "google/gemma-2-2b-it"
    assert body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    assert body["max_tokens"] == 32
    assert body["temperature"] == 0.5
    assert body["seed"] == 7


def test_openai_compatible_server_gets_its_own_token(
    api_client, worker, fake_provider, wait_until_finished
):
    evaluation_id = submit(api_client, model="local-openai")
    evaluation = wait_until_finished(evaluation_id)

    assert evaluation.status == "completed", evaluation.error
    [request] = fake_provider.recorded()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {FAKE_OPENAI_KEY}"
    assert "hf_test_token" not in str(request.headers)
    assert request.json()["model"] == "served-model"


def test_not_found_fails_without_retry(api_client, worker, fake_provider, wait_until_finished):
    fake_provider.reset(lambda request: Reply(status=404, body={"error": "Model not found"}))

    evaluation = wait_until_finished(submit(api_client, model="google/gemma-2-2b-it"))

    assert evaluation.status == "failed"
    assert "model not found at this provider" in evaluation.error
    assert evaluation.attempts == 1
    assert len(fake_provider.recorded()) == 1


def test_unavailable_is_retried_then_completes(
    api_client, worker, fake_provider, wait_until_finished
):
    fake_provider.reset(
        answer_in_sequence(
            Reply(status=503, body={"error": "Model is currently loading", "estimated_time": 1.0}),
            chat_completion("Recovered."),
        )
    )

    evaluation = wait_until_finished(submit(api_client, model="google/gemma-2-2b-it"))

    assert evaluation.status == "completed", evaluation.error
    assert evaluation.response == "Recovered."
    assert evaluation.attempts == 2
    assert len(fake_provider.recorded()) == 2


def test_body_that_is_not_json_fails_readably(
    api_client, worker, fake_provider, wait_until_finished
):
    fake_provider.reset(
        lambda request: Reply(
            status=200, raw=b"<html>oops</html>", headers={"Content-Type": "text/html"}
        )
    )

    evaluation = wait_until_finished(submit(api_client, model="google/gemma-2-2b-it"))

    assert evaluation.status == "failed"
    assert "not JSON" in evaluation.error


@pytest.mark.django_db(transaction=False)
def test_first_call_contacts_only_base_url(fake_provider, monkeypatch):
    # Start as a new worker process does: client not configured, telemetry on,
    # and no agent-harness registry fetched yet.
    monkeypatch.setattr(huggingface, "_http_client_configured", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", False)
    monkeypatch.setattr(_detect_agent, "_registry", None)
    monkeypatch.delenv("HF_HUB_DISABLE_TELEMETRY", raising=False)
    resolved: list[str] = []
    resolve = socket.getaddrinfo

    def resolve_local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        resolved.append(str(host))
        if host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "only 127.0.0.1 may be resolved here")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_local_only)

    provider = huggingface.HuggingFaceProvider(registry().get("local-openai"))
    generation = provider.generate(GenerationRequest(prompt="hi", max_new_tokens=8))

    assert generation.text == "fake answer"
    assert set(resolved) == {"127.0.0.1"}
    assert len(fake_provider.recorded()) == 1
