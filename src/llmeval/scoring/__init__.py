"""Metrics that rate a model's response with a value from 0 to 1.

Each scorer family has its own module behind the Scorer base class. The
registry maps metric names to scorer classes, and spec parses the metrics that
a request names.
"""

from llmeval.scoring.base import MetricSpecError, Parameter, Score, Scorer, ScoringCase
from llmeval.scoring.registry import build, describe_all, get_scorer_class, scorer_classes
from llmeval.scoring.spec import MetricSpec, default_metrics, parse_metrics

__all__ = [
    "MetricSpec",
    "MetricSpecError",
    "Parameter",
    "Score",
    "Scorer",
    "ScoringCase",
    "build",
    "default_metrics",
    "describe_all",
    "get_scorer_class",
    "parse_metrics",
    "scorer_classes",
]
