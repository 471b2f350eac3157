"""Bad requests: a 4xx JSON error naming the field and rule, nothing stored or enqueued."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from llmeval.evaluations.models import Evaluation
from llmeval.notifications.models import Notification

pytestmark = pytest.mark.django_db

VALID = {"input_prompt": "explain generators in python", "recipient_email": "dev@example.com"}

BAD_FIELDS = [
    ("missing prompt", {"recipient_email": "dev@example.com"}, "input_prompt", "required"),
    ("empty prompt", {"input_prompt": ""}, "input_prompt", "blank"),
    ("blank prompt", {"input_prompt": "   \n"}, "input_prompt", "blank"),
    ("null prompt", {"input_prompt": None}, "input_prompt", "null"),
    ("number prompt", {"input_prompt": 42}, "input_prompt", "string"),
    ("list prompt", {"input_prompt": ["a"]}, "input_prompt", "string"),
    ("prompt too long", {"input_prompt": "x" * 32_001}, "input_prompt", "32000"),
    ("NUL in prompt", {"input_prompt": "a\x00b"}, "input_prompt", "Null characters"),
    (
        "NUL in system prompt",
        {**VALID, "system_prompt": "a\x00"},
        "system_prompt",
        "Null characters",
    ),
    ("NUL in email", {**VALID, "recipient_email": "a\x00@example.com"}, "recipient_email", "bare"),
    ("NUL in model", {**VALID, "model": "smollm2\x00"}, "model", "Null characters"),
    ("invalid email", {**VALID, "recipient_email": "not-an-email"}, "recipient_email", "valid"),
    (
        "two emails comma",
        {**VALID, "recipient_email": "a@example.com,b@example.com"},
        "recipient_email",
        "one bare email",
    ),
    (
        "two emails semicolon",
        {**VALID, "recipient_email": "a@example.com;b@example.com"},
        "recipient_email",
        "one bare email",
    ),
    (
        "header injection",
        {**VALID, "recipient_email": "a@example.com\nBcc: x@evil.test"},
        "recipient_email",
        "line breaks",
    ),
    (
        "carriage return",
        {**VALID, "recipient_email": "a@example.com\r"},
        "recipient_email",
        "line breaks",
    ),
    (
        "display name",
        {**VALID, "recipient_email": "Dev <dev@example.com>"},
        "recipient_email",
        "angle brackets",
    ),
    ("email list", {**VALID, "recipient_email": ["dev@example.com"]}, "recipient_email", "string"),
    (
        "encoded word email",
        {**VALID, "recipient_email": "=?utf-8?q?a=0D=0ABcc?=@example.com"},
        "recipient_email",
        "encoded words",
    ),
    (
        "zero width in email",
        {**VALID, "recipient_email": "a@exam\u200bple.com"},
        "recipient_email",
        "one bare email",
    ),
    (
        "single-label domain",
        {**VALID, "recipient_email": "a@localhost"},
        "recipient_email",
        "public host name",
    ),
    (
        "IP literal domain",
        {**VALID, "recipient_email": "a@[127.0.0.1]"},
        "recipient_email",
        "public host name",
    ),
    (
        "IDN label too long",
        {**VALID, "recipient_email": "a@" + "\u00fc" * 60 + ".com"},
        "recipient_email",
        "public host name",
    ),
    ("model with space", {**VALID, "model": "smollm2-135m-instruct "}, "model", "Unknown model"),
    ("unknown model", {**VALID, "model": "gpt-17"}, "model", "Unknown model"),
    ("tokens zero", {**VALID, "max_new_tokens": 0}, "max_new_tokens", "greater than or equal to 1"),
    ("tokens too many", {**VALID, "max_new_tokens": 4097}, "max_new_tokens", "less than or equal"),
    ("tokens string", {**VALID, "max_new_tokens": "12"}, "max_new_tokens", "integer"),
    ("tokens float", {**VALID, "max_new_tokens": 12.5}, "max_new_tokens", "integer"),
    ("tokens bool", {**VALID, "max_new_tokens": True}, "max_new_tokens", "integer"),
    ("temperature negative", {**VALID, "temperature": -0.1}, "temperature", "greater than"),
    ("temperature too high", {**VALID, "temperature": 2.5}, "temperature", "less than"),
    ("temperature string", {**VALID, "temperature": "hot"}, "temperature", "number"),
    ("seed negative", {**VALID, "seed": -1}, "seed", "greater than"),
    ("seed too large", {**VALID, "seed": 2**32 - 1}, "seed", "less than"),
    ("seed float", {**VALID, "seed": 1.5}, "seed", "integer"),
    ("system prompt number", {**VALID, "system_prompt": 5}, "system_prompt", "string"),
    ("unknown field", {**VALID, "max_tokens": 5}, "max_tokens", "Unknown field"),
]


def assert_nothing_stored() -> None:
    assert Evaluation.objects.count() == 0
    assert Notification.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [case[1:] for case in BAD_FIELDS],
    ids=[case[0] for case in BAD_FIELDS],
)
def test_bad_field_is_rejected(api_client, django_capture_on_commit_callbacks, body, field, rule):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.post("/api/evaluate", body, format="json")

    assert response.status_code == 400
    errors = response.json()
    assert field in errors
    assert rule in " ".join(errors[field])
    assert callbacks == []
    assert_nothing_stored()


BAD_BODIES = [
    ("not json", b"{input_prompt: nope", "application/json", 400, "JSON parse error"),
    ("json list", b'["explain generators"]', "application/json", 400, "Expected a dictionary"),
    ("json string", b'"explain generators"', "application/json", 400, "Expected a dictionary"),
    ("json null", b"null", "application/json", 400, "No data provided"),
    (
        "NaN temperature",
        b'{"input_prompt": "x", "temperature": NaN}',
        "application/json",
        400,
        "JSON parse error",
    ),
    ("form body", b"input_prompt=hello", "application/x-www-form-urlencoded", 415, "Unsupported"),
    ("invalid utf-8", b'{"input_prompt": "\xff\xfe"}', "application/json", 400, "JSON parse error"),
    (
        "deeply nested",
        b'{"input_prompt": "x", "x": ' + b"[" * 1500 + b"]" * 1500 + b"}",
        "application/json",
        400,
        "nested too deeply",
    ),
    (
        "lone surrogate key",
        b'{"input_prompt": "x", "\\ud800": 1}',
        "application/json",
        400,
        "Unknown field",
    ),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "detail"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_body_is_rejected(
    api_client, django_capture_on_commit_callbacks, raw, content_type, status, detail
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.post("/api/evaluate", raw, content_type=content_type)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert detail in json.dumps(response.json())
    assert callbacks == []
    assert_nothing_stored()


def test_body_over_limit_is_413(api_client, django_capture_on_commit_callbacks):
    body = json.dumps({"input_prompt": "x" * 300_000}).encode()

    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.post("/api/evaluate", body, content_type="application/json")

    assert response.status_code == 413
    assert "API_MAX_BODY_BYTES" in response.json()["detail"]
    assert callbacks == []
    assert_nothing_stored()


@override_settings(MAX_PROMPT_CHARS=10)
def test_prompt_limit_is_configurable(api_client):
    response = api_client.post("/api/evaluate", {"input_prompt": "x" * 11}, format="json")

    assert response.status_code == 400
    assert "no more than 10 characters" in response.json()["input_prompt"][0]
    assert_nothing_stored()


def test_valid_body_enqueues_after_commit(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_client.post("/api/evaluate", VALID, format="json")

    assert response.status_code == 202
    assert len(callbacks) == 1
    assert Evaluation.objects.count() == 1
    assert Notification.objects.get().recipient == "dev@example.com"
