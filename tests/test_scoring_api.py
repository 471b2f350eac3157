"""Scoring through the API and the worker: metric specs, stored scores, the judge, the email."""

from __future__ import annotations

import json

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from llmeval.evaluations.models import Evaluation
from tests.fakes.http import RecordedRequest, Reply
from tests.fakes.providers import chat_completion

pytestmark = pytest.mark.django_db(transaction=True)

EXPECTED = "A generator is a function that yields values one at a time."


def submit(api_client, **fields) -> str:
    response = api_client.post("/api/evaluate", fields, format="json")
    assert response.status_code == 202, response.json()
    evaluation_id: str = response.json()["id"]
    return evaluation_id


def test_local_model_scores_match_reference_libraries(
    api_client, worker, wait_until_finished, wait_until_notified, outbox
):
    evaluation_id = submit(
        api_client,
        input_prompt="explain generators in python",
        expected_output=EXPECTED,
        max_new_tokens=48,
        seed=3,
        recipient_email="dev@example.com",
        metrics=["exact_match", "rouge_l", {"name": "contains", "value": "generator"}, "bleu"],
    )

    evaluation = wait_until_finished(evaluation_id)
    assert evaluation.status == "completed", evaluation.error
    body = api_client.get(f"/api/evaluate/{evaluation_id}").json()
    scores = {score["name"]: score for score in body["scores"]}
    response = evaluation.response

    assert set(scores) == {"exact_match", "rouge_l", "contains", "bleu"}
    assert all(score["error"] == "" for score in scores.values())
    assert scores["exact_match"]["value"] == float(response.strip() == EXPECTED)
    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(EXPECTED, response)
    assert scores["rouge_l"]["value"] == pytest.approx(reference["rougeL"].fmeasure)
    assert scores["contains"]["value"] == float("generator" in response)
    bleu = sacrebleu.sentence_bleu(response, [EXPECTED]).score / 100
    assert scores["bleu"]["value"] == pytest.approx(min(bleu, 1.0))
    assert scores["contains"]["passed"] == ("generator" in response)
    with_threshold = [s for s in scores.values() if s["threshold"] is not None]
    assert body["passed"] == all(s["passed"] for s in with_threshold)

    wait_until_notified(evaluation_id)
    [email] = [p.read_text() for p in outbox.iterdir() if evaluation_id in p.read_text()]
    assert "Scores" in email
    assert "rouge_l" in email


def judge_then_answer(verdict: str):
    """Answer the evaluated prompt with a fixed text and the judge with ``verdict``."""

    def handler(request: RecordedRequest) -> Reply:
        system = request.json()["messages"][0]["content"]
        if "grade" in system.lower() or "judge" in system.lower():
            return chat_completion(verdict, prompt_tokens=120, completion_tokens=30)
        return chat_completion("Paris is the capital of France.")

    return handler


VERDICTS = [
    ("json", '{"reasoning": "Correct and concise.", "score": 5}', 5, "Correct and concise."),
    (
        "fenced json",
        'Here:\n```json\n{"score": 4, "reasoning": "Mostly right."}\n```',
        4,
        "Mostly right.",
    ),
    ("score line", "The answer names Paris.\nScore: 3/5", 3, ""),
    ("double brackets", "Good answer overall. [[4]]", 4, ""),
]


@pytest.mark.parametrize(
    ("verdict", "score", "reasoning"), [v[1:] for v in VERDICTS], ids=[v[0] for v in VERDICTS]
)
def test_judge_verdict_is_stored(
    api_client, worker, fake_provider, wait_until_finished, verdict, score, reasoning
):
    fake_provider.reset(judge_then_answer(verdict))

    evaluation = wait_until_finished(
        submit(
            api_client,
            input_prompt="What is the capital of France?",
            model="local-openai",
            metrics=[
                {
                    "name": "judge",
                    "model": "google/gemma-2-2b-it",
                    "criteria": "Names the correct capital.",
                    "threshold": 0.5,
                }
            ],
        )
    )

    assert evaluation.status == "completed", evaluation.error
    [judged] = evaluation.scores
    assert judged["error"] == ""
    assert judged["details"]["score"] == score
    assert judged["value"] == pytest.approx((score - 1) / 4)
    assert judged["passed"] is (judged["value"] >= 0.5)
    assert judged["details"]["raw"] == verdict
    assert judged["details"]["usage"] == {"input_tokens": 120, "output_tokens": 30}
    if reasoning:
        assert judged["details"]["reasoning"] == reasoning
    judge_request = fake_provider.recorded()[-1].json()
    assert judge_request["model"] == "google/gemma-2-2b-it"
    assert judge_request["temperature"] == 0.0
    assert "Paris is the capital of France." in judge_request["messages"][-1]["content"]


def test_unreadable_verdict_is_a_score_error(
    api_client, worker, fake_provider, wait_until_finished
):
    fake_provider.reset(judge_then_answer("I think the answer is rather good, overall."))

    evaluation = wait_until_finished(
        submit(
            api_client,
            input_prompt="What is the capital of France?",
            model="local-openai",
            expected_output="Paris",
            metrics=[
                {"name": "judge", "model": "google/gemma-2-2b-it", "criteria": "Correct."},
                "exact_match",
            ],
        )
    )

    assert evaluation.status == "completed"
    judged, exact = evaluation.scores
    assert judged["value"] is None
    assert "VerdictParseError" in judged["error"]
    assert judged["details"]["raw"].startswith("I think the answer")
    assert exact["error"] == ""
    assert exact["value"] == 0.0


def test_judge_provider_error_is_a_score_error(
    api_client, worker, fake_provider, wait_until_finished
):
    def handler(request: RecordedRequest) -> Reply:
        if request.json()["model"] == "google/gemma-2-2b-it":
            return Reply(status=404, body={"error": "no such model"})
        return chat_completion("Paris.")

    fake_provider.reset(handler)

    evaluation = wait_until_finished(
        submit(
            api_client,
            input_prompt="Capital of France?",
            model="local-openai",
            metrics=[{"name": "judge", "model": "google/gemma-2-2b-it", "criteria": "Correct."}],
        )
    )

    assert evaluation.status == "completed"
    [judged] = evaluation.scores
    assert "model not found" in judged["error"]
    assert evaluation.passed is None


BAD_METRICS = [
    ("not a list", {"metrics": "rouge_l"}, "must be a list"),
    ("unknown metric", {"metrics": ["bleurt"]}, "bleurt"),
    ("needs expected output", {"metrics": ["rouge_l"]}, "requires an expected_output"),
    ("missing parameter", {"metrics": [{"name": "contains"}]}, "'value' is required"),
    ("unknown parameter", {"metrics": [{"name": "contains", "value": "x", "colour": 1}]}, "colour"),
    (
        "threshold too high",
        {"metrics": [{"name": "contains", "value": "x", "threshold": 2}]},
        "threshold",
    ),
    ("bad regex", {"metrics": [{"name": "regex", "pattern": "("}]}, "regex"),
    (
        "bad json schema",
        {"metrics": [{"name": "json_schema", "schema": {"type": 5}}]},
        "json_schema",
    ),
    (
        "judge unknown model",
        {"metrics": [{"name": "judge", "model": "gpt-9", "criteria": "x"}]},
        "'gpt-9' is not registered",
    ),
]


@pytest.mark.parametrize(
    ("fields", "message"), [b[1:] for b in BAD_METRICS], ids=[b[0] for b in BAD_METRICS]
)
def test_bad_metric_spec_is_400(api_client, fields, message):
    response = api_client.post("/api/evaluate", {"input_prompt": "hi", **fields}, format="json")

    assert response.status_code == 400
    assert message in json.dumps(response.json()["metrics"])
    assert Evaluation.objects.count() == 0


def test_default_metrics(api_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        with_expected = submit(api_client, input_prompt="hi", expected_output="hello")
        without = submit(api_client, input_prompt="hi")

    names = [spec["name"] for spec in Evaluation.objects.get(pk=with_expected).metrics]
    assert names == ["exact_match", "rouge_l"]
    assert Evaluation.objects.get(pk=without).metrics == []


def test_metrics_endpoint_lists_scorers(api_client):
    body = api_client.get("/api/metrics").json()

    by_name = {metric["name"]: metric for metric in body["results"]}
    assert {
        "exact_match",
        "contains",
        "regex",
        "json_schema",
        "rouge_l",
        "bleu",
        "chrf",
        "length",
        "latency",
        "judge",
        "semantic_similarity",
    } <= set(by_name)
    assert by_name["rouge_l"]["requires_expected_output"] is True
    assert by_name["contains"]["requires_expected_output"] is False
    assert any(p["name"] == "value" and p["required"] for p in by_name["contains"]["parameters"])
    assert by_name["semantic_similarity"]["available"] is False
    assert "semantic" in by_name["semantic_similarity"]["unavailable_reason"]
