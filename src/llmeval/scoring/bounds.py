"""Limits on the size of the response and on the time the model took."""

from __future__ import annotations

from typing import Any

from llmeval.scoring.base import Parameter, Scorer, ScoringCase


class Length(Scorer):
    name = "length"
    description = "1 when the response length is within [min, max], both inclusive, else 0."
    default_threshold = 1.0
    parameters = (
        Parameter(
            "unit",
            "choice",
            "What to count: Unicode characters, words separated by white space, or the "
            "output tokens that the provider reported.",
            default="characters",
            choices=("characters", "words", "tokens"),
        ),
        Parameter("min", "integer", "The minimum length, inclusive."),
        Parameter("max", "integer", "The maximum length, inclusive."),
    )

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        minimum, maximum = params.get("min"), params.get("max")
        if minimum is None and maximum is None:
            raise ValueError("at least one of the parameters 'min' and 'max' is required")
        for name in ("min", "max"):
            if params.get(name, 0) < 0:
                raise ValueError(f"parameter {name!r} must be 0 or more, got {params[name]}")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise ValueError(f"'min' ({minimum}) is greater than 'max' ({maximum})")

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        unit = self.params["unit"]
        length = self.measure(case, unit)
        minimum, maximum = self.params.get("min"), self.params.get("max")

        within = (minimum is None or length >= minimum) and (maximum is None or length <= maximum)
        details = {"unit": unit, "length": length, "min": minimum, "max": maximum}
        return (1.0 if within else 0.0), details

    @staticmethod
    def measure(case: ScoringCase, unit: str) -> int:
        if unit == "words":
            return len(case.response.split())
        if unit == "characters":
            return len(case.response)

        if case.output_tokens is None:
            raise ValueError(
                "unit 'tokens' needs the output token count, and the provider did not "
                "report one for this response. Use unit 'characters' or 'words' instead."
            )
        return case.output_tokens


class Latency(Scorer):
    name = "latency"
    description = "1 when the generation took at most max_ms milliseconds, else 0."
    default_threshold = 1.0
    parameters = (
        Parameter(
            "max_ms",
            "integer",
            "The maximum generation time in milliseconds, inclusive.",
            required=True,
        ),
    )

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        if params["max_ms"] < 1:
            raise ValueError(f"parameter 'max_ms' must be 1 or more, got {params['max_ms']}")

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        if case.latency_ms is None:
            raise ValueError("the response has no latency_ms to compare with 'max_ms'")

        max_ms = self.params["max_ms"]
        details = {"latency_ms": case.latency_ms, "max_ms": max_ms}
        return (1.0 if case.latency_ms <= max_ms else 0.0), details
