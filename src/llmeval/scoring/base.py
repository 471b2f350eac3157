"""The scorer contract shared by every metric, and the checks on a metric's parameters."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

logger = logging.getLogger(__name__)

# Longer strings are not repeated in error messages, which may end up in logs.
MAX_ECHOED_CHARS = 40

ParameterType = Literal["string", "string_list", "boolean", "integer", "number", "object", "choice"]


@dataclass(frozen=True, slots=True)
class ScoringCase:
    """One model response to score, with what the provider measured while generating it."""

    prompt: str
    response: str
    expected_output: str | None = None
    latency_ms: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """The outcome of one metric on one response.

    ``value`` is in 0..1, or None when the scorer failed, and ``error`` then gives
    the reason. ``passed`` is None when the metric has no threshold.
    """

    name: str
    value: float | None
    passed: bool | None
    threshold: float | None
    details: dict[str, Any]
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "passed": self.passed,
            "threshold": self.threshold,
            "details": self.details,
            "error": self.error,
        }


class MetricSpecError(ValueError):
    """A metric list or one metric's settings are invalid.

    ``index`` is the position of the offending item in the submitted list, or
    None when the error concerns the whole list or no list at all.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index

    def __str__(self) -> str:
        if self.index is None:
            return self.message
        return f"metrics[{self.index}]: {self.message}"


@dataclass(frozen=True)
class Parameter:
    """One setting a scorer accepts, with the JSON type a request must give it.

    The types:

    - ``string``: a non-empty string.
    - ``string_list``: a non-empty string or a non-empty list of them, stored as a list.
    - ``boolean``, ``integer``, ``number``: strict, so ``true`` is not the integer 1.
    - ``object``: a JSON object.
    - ``choice``: one of ``choices``.
    """

    name: str
    type: ParameterType
    description: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "required": self.required,
            "default": self.default,
            "choices": list(self.choices),
        }

    def coerce(self, value: object) -> Any:
        """Return ``value`` in its stored form, or raise ValueError naming the expected type."""
        match self.type:
            case "string":
                if isinstance(value, str) and value:
                    return value
                raise ValueError("must be a non-empty string")
            case "string_list":
                return _string_list(value)
            case "boolean":
                if isinstance(value, bool):
                    return value
                raise ValueError("must be true or false")
            case "integer":
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
                raise ValueError("must be an integer")
            case "number":
                return _finite_number(value)
            case "object":
                if isinstance(value, dict):
                    return value
                raise ValueError("must be a JSON object")
            case "choice":
                if isinstance(value, str) and value in self.choices:
                    return value
                raise ValueError(f"must be one of {', '.join(map(repr, self.choices))}")


def _string_list(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(item, str) and item for item in items)
    ):
        raise ValueError("must be a non-empty string or a non-empty list of non-empty strings")
    return list(items)


def _finite_number(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class Scorer(ABC):
    """A metric that rates one response with a value from 0 to 1.

    Subclasses set the class attributes and implement ``compute``, which returns
    the value and a JSON-ready ``details`` dict that explains it. ``compute`` may
    raise on input it cannot score (a missing latency, say). ``score`` turns that
    into a Score with an error, so one failing metric never stops the others.

    A scorer is built from parameters already checked against ``parameters``
    and ``validate_params``. ``__init__`` checks them again and fills in the
    defaults, so ``self.params`` contains every parameter that has a value.
    Scorers that need an optional package override ``availability``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    requires_expected_output: ClassVar[bool] = False
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    default_threshold: ClassVar[float | None] = None

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = self.resolve_params(params or {})

    @abstractmethod
    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        """Return the value, from 0 to 1, and the details that explain it."""

    @classmethod
    def availability(cls) -> str | None:
        """Return None when the scorer can run here, or the reason it cannot."""
        return None

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        """Check rules across parameters, raising ValueError with the problem.

        ``params`` has already passed the per-parameter type checks and has the
        defaults filled in. The message need not name the metric.
        """
        return None

    @classmethod
    def resolve_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``params`` and fill in defaults, raising MetricSpecError on the first problem."""
        declared = {parameter.name: parameter for parameter in cls.parameters}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            accepted = ", ".join(declared) or "none"
            raise MetricSpecError(
                f"metric {cls.name!r}: unknown parameter {unknown[0]!r}; "
                f"accepted parameters: {accepted}"
            )

        resolved: dict[str, Any] = {}
        for parameter in cls.parameters:
            if parameter.name in params:
                resolved[parameter.name] = _coerce(cls.name, parameter, params[parameter.name])
            elif parameter.required:
                raise MetricSpecError(
                    f"metric {cls.name!r}: parameter {parameter.name!r} is required"
                )
            elif parameter.default is not None:
                resolved[parameter.name] = parameter.default

        try:
            cls.validate_params(resolved)
        except ValueError as exc:
            raise MetricSpecError(f"metric {cls.name!r}: {exc}") from None
        return resolved

    def score(self, case: ScoringCase, threshold: float | None = None) -> Score:
        """Compute the metric, returning a Score that carries any failure as its error."""
        try:
            value, details = self.compute(case)
        except Exception as exc:
            logger.warning(
                "scoring.scorer_failed metric=%s error=%s", self.name, type(exc).__name__
            )
            return self.error_score(exc, threshold)
        return self.make_score(value, details, threshold)

    def make_score(self, value: float, details: dict[str, Any], threshold: float | None) -> Score:
        """Build the Score for a computed value, or an error Score when it is outside 0..1."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            problem = ValueError(f"{self.name} returned {value!r}, which is not a number")
            return self.error_score(problem, threshold, details)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            problem = ValueError(f"{self.name} returned {value!r}, which is outside 0..1")
            return self.error_score(problem, threshold, details)

        value = float(value)
        passed = None if threshold is None else value >= threshold
        return Score(self.name, value, passed, threshold, details)

    def error_score(
        self,
        exc: BaseException,
        threshold: float | None,
        details: dict[str, Any] | None = None,
    ) -> Score:
        """Build the Score of a failed metric: no value, and failed when it had a threshold."""
        passed = None if threshold is None else False
        error = f"{type(exc).__name__}: {exc}"
        return Score(self.name, None, passed, threshold, details or {}, error)


def _coerce(metric: str, parameter: Parameter, value: object) -> Any:
    try:
        return parameter.coerce(value)
    except ValueError as exc:
        raise MetricSpecError(
            f"metric {metric!r}: parameter {parameter.name!r} {exc}, got {describe_value(value)}"
        ) from None


def describe_value(value: object) -> str:
    """Name a JSON value for an error message without echoing a long string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= MAX_ECHOED_CHARS else "a long string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
