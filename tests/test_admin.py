"""The admin: staff can browse every evaluation, and no API key secret is ever shown."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from llmeval.accounts.models import ApiKey
from llmeval.evaluations.models import Evaluation
from llmeval.notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin_user = User.objects.create_superuser("admin", "admin@example.com", "admin-password")
    client.force_login(admin_user)
    return client


@pytest.fixture
def stored():
    owner = User.objects.create(username="owner")
    api_key, key = ApiKey.issue(owner, name="ci")
    evaluation = Evaluation.objects.create(
        owner=owner,
        input_prompt="hi",
        model="smollm2-135m-instruct",
        max_new_tokens=8,
        temperature=0.7,
    )
    notification = Notification.objects.create(evaluation=evaluation, recipient="dev@example.com")
    return {"key": key, "api_key": api_key, "evaluation": evaluation, "notification": notification}


@pytest.mark.parametrize(
    "path",
    [
        "/admin/evaluations/evaluation/",
        "/admin/notifications/notification/",
        "/admin/accounts/apikey/",
        "/admin/evaluations/evaluation/?status__exact=pending",
        "/admin/evaluations/evaluation/?q=owner",
    ],
)
def test_changelists_load(staff_client, stored, path):
    response = staff_client.get(path)

    assert response.status_code == 200


def test_staff_sees_every_users_evaluation(staff_client, stored):
    evaluation = stored["evaluation"]

    response = staff_client.get(f"/admin/evaluations/evaluation/{evaluation.pk}/change/")

    assert response.status_code == 200
    assert str(evaluation.pk) in response.content.decode()


def test_api_key_pages_never_show_secret(staff_client, stored):
    api_key = stored["api_key"]
    pages = [
        staff_client.get("/admin/accounts/apikey/").content.decode(),
        staff_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/").content.decode(),
    ]

    for page in pages:
        assert stored["key"] not in page
        assert api_key.key_hash not in page
        assert api_key.prefix in page


def test_adding_key_shows_it_once(staff_client, stored):
    owner = User.objects.get(username="owner")

    response = staff_client.post(
        "/admin/accounts/apikey/add/", {"user": owner.pk, "name": "from admin"}, follow=True
    )

    page = response.content.decode()
    created = ApiKey.objects.get(name="from admin")
    assert "copy it now" in page
    assert created.prefix in page
    assert created.key_hash not in page


def test_revoke_action(staff_client, stored):
    api_key = stored["api_key"]

    staff_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke_keys", "_selected_action": [str(api_key.pk)]},
    )

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_evaluation_fields_are_read_only(staff_client, stored):
    evaluation = stored["evaluation"]

    staff_client.post(
        f"/admin/evaluations/evaluation/{evaluation.pk}/change/", {"status": "completed"}
    )

    evaluation.refresh_from_db()
    assert evaluation.status == "pending"
