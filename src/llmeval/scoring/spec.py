"""Metric specs: which metrics to run on a response, parsed from a request and stored as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmeval.scoring.base import MetricSpecError, describe_value
from llmeval.scoring.registry import availability, get_scorer_class

MAX_METRICS = 20
DEFAULT_METRICS_WITH_EXPECTED_OUTPUT = ("exact_match", "rouge_l")
# Keys of a metric object that are not scorer parameters.
RESERVED_KEYS = frozenset({"name", "threshold", "params"})

_ABSENT = object()


@dataclass(frozen=True)
class MetricSpec:
    """One metric to run: its name, its parameters with defaults filled in, and its threshold."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricSpec:
        """Read a spec stored by ``to_dict``. The parameters are checked again by ``build``."""
        name, params, threshold = data.get("name"), data.get("params", {}), data.get("threshold")
        if not isinstance(name, str) or not name:
            raise MetricSpecError(f"a stored metric has no valid name: {describe_value(name)}")
        if not isinstance(params, dict):
            raise MetricSpecError(f"metric {name!r}: the stored 'params' is not an object")
        return cls(name=name, params=params, threshold=_threshold(name, threshold))

    def identity(self) -> str:
        """Return a key that is equal for two specs of the same metric with the same parameters."""
        return json.dumps([self.name, self.params], sort_keys=True)


def parse_metrics(raw: object, has_expected_output: bool) -> list[MetricSpec]:
    """Parse and check the ``metrics`` list of a request.

    Each item is a metric name, or an object with ``name``, an optional
    ``threshold`` from 0 to 1 (null for no pass or fail) and the parameters,
    either inline or under ``params``. A metric without a threshold gets its
    scorer's default. Raises MetricSpecError, with the item's index, on the
    first problem.
    """
    if not isinstance(raw, list):
        raise MetricSpecError(
            f"metrics must be a list of metric names or objects, got {describe_value(raw)}"
        )
    if len(raw) > MAX_METRICS:
        raise MetricSpecError(f"at most {MAX_METRICS} metrics are allowed, got {len(raw)}")

    specs: list[MetricSpec] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(raw):
        try:
            spec = _parse_item(item, has_expected_output)
        except MetricSpecError as exc:
            raise MetricSpecError(exc.message, index) from None

        key = spec.identity()
        if key in first_index:
            raise MetricSpecError(
                f"metric {spec.name!r} is listed twice with the same parameters "
                f"(items {first_index[key]} and {index})",
                index,
            )
        first_index[key] = index
        specs.append(spec)
    return specs


def default_metrics(has_expected_output: bool) -> list[MetricSpec]:
    """Return the metrics run when a request names none: exact_match and rouge_l, or none."""
    if not has_expected_output:
        return []
    return parse_metrics(list(DEFAULT_METRICS_WITH_EXPECTED_OUTPUT), has_expected_output=True)


def _parse_item(item: object, has_expected_output: bool) -> MetricSpec:
    params: dict[str, Any]
    if isinstance(item, str):
        name, params, threshold = item, {}, _ABSENT
    elif isinstance(item, dict):
        name, params, threshold = _split_object(item)
    else:
        raise MetricSpecError(
            f"each metric must be a name or an object with a 'name', got {describe_value(item)}"
        )

    scorer = get_scorer_class(name)
    reason = availability(scorer)
    if reason is not None:
        raise MetricSpecError(f"metric {name!r} is unavailable: {reason}")
    if scorer.requires_expected_output and not has_expected_output:
        raise MetricSpecError(
            f"metric {name!r} requires an expected_output, and the request has none"
        )

    resolved = scorer.resolve_params(params)
    if threshold is _ABSENT:
        return MetricSpec(name, resolved, scorer.default_threshold)
    return MetricSpec(name, resolved, _threshold(name, threshold))


def _split_object(item: dict[str, Any]) -> tuple[str, dict[str, Any], object]:
    """Split a metric object into its name, its parameters and its threshold (or _ABSENT)."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise MetricSpecError(f"a metric object needs a 'name' string, got {describe_value(name)}")

    nested = item.get("params", {})
    if not isinstance(nested, dict):
        raise MetricSpecError(
            f"metric {name!r}: 'params' must be an object, got {describe_value(nested)}"
        )
    inline = {key: value for key, value in item.items() if key not in RESERVED_KEYS}
    both = sorted(set(inline) & set(nested))
    if both:
        raise MetricSpecError(
            f"metric {name!r}: parameter {both[0]!r} is given both inline and under 'params'"
        )

    return name, {**nested, **inline}, item.get("threshold", _ABSENT)


def _threshold(name: str, value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise MetricSpecError(
            f"metric {name!r}: threshold must be a number from 0 to 1 or null, "
            f"got {describe_value(value)}"
        )
    return float(value)
