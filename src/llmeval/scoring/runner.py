"""Run an evaluation's metrics on its generated response, including the judge model's call.

This runs in the worker after generation, with no database connection held.
A metric that fails becomes an error on its own score; the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llmeval.providers.base import GenerationRequest
from llmeval.providers.errors import ProviderError
from llmeval.providers.registry import ModelConfigError, get_provider, registry
from llmeval.scoring.base import MetricSpecError, Score, ScoringCase
from llmeval.scoring.judge import JudgeScorer
from llmeval.scoring.registry import build
from llmeval.scoring.spec import MetricSpec
from llmeval.text import excerpt

logger = logging.getLogger(__name__)

JUDGE_MAX_NEW_TOKENS = 512
JUDGE_RAW_CHARS = 4000


def run_metrics(specs: Sequence[dict[str, Any]], case: ScoringCase) -> list[Score]:
    return [_run_one(raw, case) for raw in specs]


def overall_passed(scores: Sequence[Score]) -> bool | None:
    """Return whether every score with a threshold passed; None when none has a threshold."""
    judged = [score for score in scores if score.threshold is not None]
    if not judged:
        return None
    return all(score.passed is True for score in judged)


def _run_one(raw: dict[str, Any], case: ScoringCase) -> Score:
    try:
        spec = MetricSpec.from_dict(raw)
        scorer = build(spec)
    except MetricSpecError as exc:
        stored = raw.get("threshold")
        threshold = float(stored) if isinstance(stored, int | float) else None
        return Score(
            name=str(raw.get("name", "unknown")),
            value=None,
            passed=False if threshold is not None else None,
            threshold=threshold,
            details={},
            error=exc.message,
        )

    if isinstance(scorer, JudgeScorer):
        return _run_judge(scorer, case, spec.threshold)
    return scorer.score(case, spec.threshold)


def _run_judge(scorer: JudgeScorer, case: ScoringCase, threshold: float | None) -> Score:
    """Ask the judge model for a verdict and store its reasoning, raw output and token usage."""
    messages = scorer.messages(case)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    user = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
    request = GenerationRequest(
        prompt=user,
        system_prompt=system,
        max_new_tokens=JUDGE_MAX_NEW_TOKENS,
        temperature=0.0,
        seed=0,
    )

    try:
        spec = registry().get(scorer.params["model"])
        generation = get_provider(spec).generate(request)
    except (ProviderError, ModelConfigError) as exc:
        logger.warning("scoring.judge_failed model=%s error=%s", scorer.params["model"], exc)
        return scorer.error_score(exc, threshold, {"model": scorer.params["model"]})

    score = scorer.score_output(generation.text, threshold)
    details = {
        **score.details,
        "model": scorer.params["model"],
        "raw": excerpt(generation.text, JUDGE_RAW_CHARS),
        "usage": {
            "input_tokens": generation.input_tokens,
            "output_tokens": generation.output_tokens,
        },
        "latency_ms": generation.latency_ms,
    }
    return Score(
        name=score.name,
        value=score.value,
        passed=score.passed,
        threshold=score.threshold,
        details=details,
        error=score.error,
    )
