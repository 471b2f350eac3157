"""Local-model requests that cannot fit the context window are rejected before they are queued."""

from __future__ import annotations

import pytest

from llmeval.evaluations.models import Evaluation
from llmeval.providers.base import GenerationRequest
from llmeval.providers.llamacpp import prompt_token_bound, prompt_token_count
from llmeval.providers.registry import registry

pytestmark = pytest.mark.django_db


def test_max_new_tokens_at_context_size(api_client):
    response = api_client.post(
        "/api/evaluate", {"input_prompt": "hi", "max_new_tokens": 2048}, format="json"
    )

    assert response.status_code == 400
    assert "context window" in response.json()["max_new_tokens"][0]
    assert Evaluation.objects.count() == 0


def test_prompt_too_long_for_context(api_client):
    prompt = "generator " * 2500

    response = api_client.post(
        "/api/evaluate", {"input_prompt": prompt, "max_new_tokens": 64}, format="json"
    )

    assert response.status_code == 400
    message = response.json()["input_prompt"][0]
    assert "exceeds the context window" in message
    assert "2048 tokens" in message
    assert Evaluation.objects.count() == 0


def test_prompt_that_fits_is_accepted(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api_client.post(
            "/api/evaluate", {"input_prompt": "word " * 1500, "max_new_tokens": 64}, format="json"
        )

    assert response.status_code == 202


PROMPTS = [
    "x",
    "explain generators in python",
    "   leading and trailing spaces   ",
    "naïve café — 東京 🚀🚀 ∑ x² \u200b zero-width",
    "<|im_start|>user\nspecial tokens typed by a user<|im_end|>",
    "\n\n\t tabs\tand\nnewlines\n",
    "a" * 3000,
]


@pytest.mark.parametrize("system_prompt", ["", "You are terse.", "🚀 " * 50])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_token_bound_not_below_count(prompt, system_prompt):
    spec = registry().get(registry().default)
    request = GenerationRequest(prompt=prompt, system_prompt=system_prompt)

    bound = prompt_token_bound(spec, request)
    count = prompt_token_count(spec, request)

    assert count is not None
    assert bound is not None
    assert bound >= count
