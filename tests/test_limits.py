"""Rate limits per key, the email policy, and configurable input limits."""

from __future__ import annotations

import pytest

from llmeval.evaluations.models import Evaluation
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates: str) -> None:
        current = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**current, **rates},
        }

    return set_rates


def test_submissions_throttled_per_key(rates, django_capture_on_commit_callbacks):
    rates(submit="2/min")
    owner, other = client_for("owner"), client_for("other")

    with django_capture_on_commit_callbacks(execute=False):
        codes = [
            owner.post("/api/evaluate", {"input_prompt": "hi"}, format="json").status_code
            for _ in range(3)
        ]
        other_code = other.post("/api/evaluate", {"input_prompt": "hi"}, format="json").status_code

    assert codes == [202, 202, 429]
    assert other_code == 202
    assert Evaluation.objects.count() == 3


def test_throttled_response_has_retry_after(rates):
    rates(read="1/min")
    client = client_for("owner")
    client.get("/api/evaluate")

    response = client.get("/api/evaluate")

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "throttled" in response.json()["detail"].lower()


def test_email_limit_only_counts_emails(rates, django_capture_on_commit_callbacks):
    rates(email="1/day")
    client = client_for("owner")
    with_email = {"input_prompt": "hi", "recipient_email": "dev@example.com"}

    with django_capture_on_commit_callbacks(execute=False):
        first = client.post("/api/evaluate", with_email, format="json")
        second = client.post("/api/evaluate", with_email, format="json")
        without = client.post("/api/evaluate", {"input_prompt": "hi"}, format="json")

    assert first.status_code == 202
    assert second.status_code == 429
    assert without.status_code == 202
    assert Evaluation.objects.count() == 2


def test_recipient_outside_allowed_domains_is_400(settings):
    settings.RECIPIENT_DOMAINS = ["example.com"]
    client = client_for("owner")

    response = client.post(
        "/api/evaluate", {"input_prompt": "hi", "recipient_email": "dev@other.test"}, format="json"
    )

    assert response.status_code == 400
    assert "example.com" in response.json()["recipient_email"][0]
    assert Evaluation.objects.count() == 0


def test_recipient_inside_allowed_domains_is_accepted(settings, django_capture_on_commit_callbacks):
    settings.RECIPIENT_DOMAINS = ["example.com"]
    client = client_for("owner")

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/api/evaluate",
            {"input_prompt": "hi", "recipient_email": "Dev@EXAMPLE.com"},
            format="json",
        )

    assert response.status_code == 202


def test_body_limit_is_configurable(settings):
    settings.API_MAX_BODY_BYTES = 2000
    client = client_for("owner")

    response = client.post("/api/evaluate", {"input_prompt": "x" * 3000}, format="json")

    assert response.status_code == 413
    assert "2000 bytes" in response.json()["detail"]


def test_max_new_tokens_limit_is_configurable(settings):
    settings.MAX_NEW_TOKENS_LIMIT = 100
    client = client_for("owner")

    response = client.post(
        "/api/evaluate", {"input_prompt": "hi", "max_new_tokens": 101}, format="json"
    )

    assert response.status_code == 400
    assert "100" in response.json()["max_new_tokens"][0]
