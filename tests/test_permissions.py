"""Who may do what: an owner, a teammate and an outsider, each with their own API key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from llmeval.accounts.models import ApiKey
from llmeval.evaluations.models import Evaluation
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

BODY = {"input_prompt": "explain generators in python"}


@pytest.fixture
def owner():
    return client_for("owner")


@pytest.fixture
def teammate():
    return client_for("teammate")


@pytest.fixture
def outsider():
    return client_for("outsider")


@pytest.fixture
def owned_evaluation(owner, django_capture_on_commit_callbacks) -> str:
    with django_capture_on_commit_callbacks(execute=False):
        response = owner.post("/api/evaluate", BODY, format="json")
    evaluation_id: str = response.json()["id"]
    return evaluation_id


def test_owner_reads_own_evaluation(owner, owned_evaluation):
    response = owner.get(f"/api/evaluate/{owned_evaluation}")

    assert response.status_code == 200
    assert Evaluation.objects.get(pk=owned_evaluation).owner == owner.user


@pytest.mark.parametrize("persona", ["teammate", "outsider"])
def test_others_get_404_like_missing(request, owned_evaluation, persona):
    client = request.getfixturevalue(persona)

    response = client.get(f"/api/evaluate/{owned_evaluation}")
    missing = client.get("/api/evaluate/01a2429d-412d-75c1-8395-65b0e25ce6f6")

    assert response.status_code == 404
    assert missing.status_code == 404
    assert response.json()["detail"].startswith("No evaluation with id")
    assert missing.json()["detail"].startswith("No evaluation with id")


@pytest.mark.parametrize("persona", ["teammate", "outsider"])
def test_others_cannot_list_it(request, owned_evaluation, persona):
    client = request.getfixturevalue(persona)

    for query in ("", "?status=pending"):
        body = client.get(f"/api/evaluate{query}").json()
        assert body["results"] == []


def test_owner_lists_only_own(
    owner, outsider, owned_evaluation, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        outsider.post("/api/evaluate", BODY, format="json")

    ids = [item["id"] for item in owner.get("/api/evaluate").json()["results"]]

    assert ids == [owned_evaluation]


def test_same_idempotency_key_is_per_user(owner, outsider, django_capture_on_commit_callbacks):
    headers = {"Idempotency-Key": "shared-key"}
    with django_capture_on_commit_callbacks(execute=False):
        first = owner.post("/api/evaluate", BODY, format="json", headers=headers)
        second = outsider.post("/api/evaluate", BODY, format="json", headers=headers)

    assert first.status_code == 202
    assert second.status_code == 202
    assert first.json()["id"] != second.json()["id"]


ENDPOINTS = [
    ("post", "/api/evaluate"),
    ("get", "/api/evaluate"),
    ("get", "/api/evaluate/01a2429d-412d-75c1-8395-65b0e25ce6f6"),
    ("get", "/api/models"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_key_is_401(method, path):
    response = getattr(APIClient(), method)(path, BODY, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "credentials were not provided" in response.json()["detail"]
    assert Evaluation.objects.count() == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer llme_00000000_not-a-real-key",
        "Token abc",
        "Bearer",
        "Bearer two parts",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_bad_authorization_is_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/evaluate")

    assert response.status_code == 401
    assert "detail" in response.json()


def test_revoked_key_is_401(owner):
    ApiKey.objects.get(user=owner.user).revoke()

    assert owner.get("/api/evaluate").status_code == 401


def test_expired_key_is_401(owner):
    ApiKey.objects.filter(user=owner.user).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert owner.get("/api/evaluate").status_code == 401


def test_inactive_user_is_401(owner):
    User.objects.filter(pk=owner.user.pk).update(is_active=False)

    assert owner.get("/api/evaluate").status_code == 401


def test_key_is_stored_hashed(owner):
    api_key = ApiKey.objects.get(user=owner.user)

    assert owner.key not in (api_key.key_hash, api_key.prefix)
    assert owner.key.startswith(api_key.prefix)
    assert len(api_key.key_hash) == 64


@pytest.mark.parametrize("path", ["/api/health", "/api/schema/", "/api/docs/"])
def test_public_paths_need_no_key(path):
    assert APIClient().get(path).status_code == 200


def test_anonymous_mode_is_separate_from_users(settings, owner, owned_evaluation):
    settings.ALLOW_ANONYMOUS_ACCESS = True
    anonymous = APIClient()

    submitted = anonymous.post("/api/evaluate", BODY, format="json")
    listed = anonymous.get("/api/evaluate").json()["results"]

    assert submitted.status_code == 202
    assert [item["id"] for item in listed] == [submitted.json()["id"]]
    assert anonymous.get(f"/api/evaluate/{owned_evaluation}").status_code == 404
    assert Evaluation.objects.get(pk=submitted.json()["id"]).owner is None


def test_key_lookup_is_reused_within_cache_time(settings, owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.AUTH_CACHE_SECONDS = 30
    owner.get("/api/models")

    with CaptureQueriesContext(connection) as captured:
        response = owner.get("/api/models")

    assert response.status_code == 200
    assert not any("accounts_apikey" in query["sql"] for query in captured.captured_queries)


def test_cached_key_still_expires(settings, owner):
    settings.AUTH_CACHE_SECONDS = 30
    owner.get("/api/models")
    ApiKey.objects.filter(user=owner.user).update(expires_at=timezone.now())
    from llmeval.accounts import authentication

    for _, cached in authentication._seen.values():
        cached.expires_at = timezone.now()

    assert owner.get("/api/models").status_code == 401


def test_revoke_clears_cached_keys(settings, owner):
    settings.AUTH_CACHE_SECONDS = 30
    owner.get("/api/models")

    ApiKey.objects.get(user=owner.user).revoke()

    assert owner.get("/api/models").status_code == 401
