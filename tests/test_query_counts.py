"""Database queries per submission, per worker evaluation and per list page stay constant."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from llmeval.evaluations import services
from llmeval.evaluations.models import Evaluation
from llmeval.providers.base import Generation

pytestmark = pytest.mark.django_db


def count_queries(action) -> tuple[int, list[str]]:
    """Count the queries of ``action``, leaving out the savepoints of the test's transaction.

    Outside a test, ``transaction.atomic`` opens a real transaction instead of
    a savepoint, and BEGIN and COMMIT are not captured as queries.
    """
    with CaptureQueriesContext(connection) as captured:
        action()
    sql = [query["sql"] for query in captured.captured_queries]
    statements = [text for text in sql if "SAVEPOINT" not in text]
    return len(statements), statements


def test_submission_queries(api_client, django_capture_on_commit_callbacks):
    api_client.get("/api/models")  # the key's last_used_at is written once per minute

    with django_capture_on_commit_callbacks(execute=False):
        plain, plain_sql = count_queries(
            lambda: api_client.post("/api/evaluate", {"input_prompt": "hi"}, format="json")
        )
        with_email, _ = count_queries(
            lambda: api_client.post(
                "/api/evaluate",
                {"input_prompt": "hi", "recipient_email": "dev@example.com"},
                format="json",
            )
        )

    # The key lookup and the insert; an email adds the notification insert.
    assert plain == 2, plain_sql
    assert with_email == 3


def test_worker_evaluation_queries():
    evaluation = Evaluation.objects.create(
        input_prompt="hi", model="smollm2-135m-instruct", max_new_tokens=8, temperature=0.7
    )
    generation = Generation(text="hello", input_tokens=3, output_tokens=1, latency_ms=5)

    def run() -> None:
        claimed = services.claim(evaluation.id, "task-1")
        assert claimed is not None
        assert services.complete(claimed, generation)

    count, sql = count_queries(run)

    # Claim (UPDATE, then SELECT with the notification joined) and the final UPDATE.
    assert count == 3, sql


@pytest.mark.parametrize("rows", [3, 40])
def test_list_queries_do_not_grow_with_rows(api_client, rows):
    for index in range(rows):
        Evaluation.objects.create(
            owner=api_client.user,
            input_prompt=f"p{index}",
            model="smollm2-135m-instruct",
            max_new_tokens=8,
            temperature=0.7,
        )
    api_client.get("/api/models")

    count, sql = count_queries(lambda: api_client.get("/api/evaluate?page_size=50"))

    assert count == 2, sql
