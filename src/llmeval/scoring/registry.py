"""The scorer registry: built-in scorers by name, plus those from installed plugins.

A plugin registers a Scorer subclass in the ``llmeval.scorers`` entry point
group, for example in its pyproject.toml::

    [project.entry-points."llmeval.scorers"]
    toxicity = "my_package.scoring:Toxicity"

The metric's name is the class's ``name``. A plugin that fails to load, is not a
Scorer, or reuses a name already taken is logged and skipped.
"""

from __future__ import annotations

import inspect
import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from llmeval.scoring.base import MetricSpecError, Scorer
from llmeval.scoring.bounds import Latency, Length
from llmeval.scoring.exact import ExactMatch
from llmeval.scoring.json_checks import IsJson, JsonSchema
from llmeval.scoring.judge import JudgeScorer
from llmeval.scoring.overlap import Bleu, Chrf, RougeL
from llmeval.scoring.semantic import SemanticSimilarity
from llmeval.scoring.text import Contains, NotContains, Regex

if TYPE_CHECKING:
    from llmeval.scoring.spec import MetricSpec

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "llmeval.scorers"

BUILTIN_SCORERS: tuple[type[Scorer], ...] = (
    ExactMatch,
    Contains,
    NotContains,
    Regex,
    IsJson,
    JsonSchema,
    RougeL,
    Bleu,
    Chrf,
    Length,
    Latency,
    SemanticSimilarity,
    JudgeScorer,
)


@cache
def scorer_classes() -> dict[str, type[Scorer]]:
    """Map every metric name to its scorer class, built-ins first (cached per process)."""
    classes = {scorer.name: scorer for scorer in BUILTIN_SCORERS}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        scorer = _load_plugin(entry_point)
        if scorer is None:
            continue
        if scorer.name in classes:
            logger.warning(
                "scoring.plugin_rejected entry_point=%s metric=%s reason=name_taken",
                entry_point.value,
                scorer.name,
            )
            continue
        classes[scorer.name] = scorer
    return classes


def get_scorer_class(name: str) -> type[Scorer]:
    """Return the scorer class of a metric, raising MetricSpecError for an unknown name."""
    classes = scorer_classes()
    try:
        return classes[name]
    except KeyError:
        known = ", ".join(sorted(classes))
        raise MetricSpecError(f"unknown metric {name!r}; known metrics: {known}") from None


def build(spec: MetricSpec) -> Scorer:
    """Build the scorer for a metric spec, checking its parameters again."""
    return get_scorer_class(spec.name)(spec.params)


def availability(scorer: type[Scorer]) -> str | None:
    """Return why a scorer cannot run here, or None, treating a failing check as a reason."""
    try:
        return scorer.availability()
    except Exception as exc:
        logger.warning(
            "scoring.availability_failed metric=%s error=%s", scorer.name, type(exc).__name__
        )
        return f"its availability check failed: {type(exc).__name__}: {exc}"


def describe_all() -> list[dict[str, Any]]:
    """Describe every registered metric for the API's listing."""
    described = []
    for name, scorer in scorer_classes().items():
        reason = availability(scorer)
        described.append(
            {
                "name": name,
                "description": scorer.description,
                "requires_expected_output": scorer.requires_expected_output,
                "default_threshold": scorer.default_threshold,
                "parameters": [parameter.to_dict() for parameter in scorer.parameters],
                "available": reason is None,
                "unavailable_reason": reason,
            }
        )
    return described


def _load_plugin(entry_point: EntryPoint) -> type[Scorer] | None:
    try:
        loaded = entry_point.load()
    except Exception:
        logger.warning("scoring.plugin_failed entry_point=%s", entry_point.value, exc_info=True)
        return None

    problem = _plugin_problem(loaded)
    if problem:
        logger.warning(
            "scoring.plugin_rejected entry_point=%s reason=%s", entry_point.value, problem
        )
        return None
    return loaded  # type: ignore[no-any-return]


def _plugin_problem(loaded: object) -> str:
    if not (isinstance(loaded, type) and issubclass(loaded, Scorer)):
        return "not_a_scorer_subclass"
    if inspect.isabstract(loaded):
        return "abstract_class"
    name = getattr(loaded, "name", None)
    if not isinstance(name, str) or not name:
        return "missing_name"
    if not isinstance(getattr(loaded, "description", None), str):
        return "missing_description"
    return ""
