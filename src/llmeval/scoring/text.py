"""Substring and regular-expression checks on the response."""

from __future__ import annotations

import re
from typing import Any

from llmeval.scoring.base import Parameter, Scorer, ScoringCase
from llmeval.text import excerpt

DETAIL_CHARS = 200

_SUBSTRING_PARAMETERS = (
    Parameter(
        "value",
        "string_list",
        "The string, or list of strings, to look for in the response.",
        required=True,
    ),
    Parameter(
        "mode",
        "choice",
        "'all' checks every string, 'any' checks for at least one.",
        default="all",
        choices=("all", "any"),
    ),
    Parameter(
        "ignore_case",
        "boolean",
        "Match case-insensitively (Unicode case folding).",
        default=False,
    ),
)


class _SubstringScorer(Scorer):
    parameters = _SUBSTRING_PARAMETERS
    default_threshold = 1.0

    def find(self, response: str) -> tuple[list[str], list[str]]:
        """Split the ``value`` strings into those found in ``response`` and those missing."""
        needles: list[str] = self.params["value"]
        haystack = response
        if self.params["ignore_case"]:
            haystack = response.casefold()

        found: list[str] = []
        missing: list[str] = []
        for needle in needles:
            target = needle.casefold() if self.params["ignore_case"] else needle
            (found if target in haystack else missing).append(needle)
        return found, missing

    def details(self, found: list[str], missing: list[str]) -> dict[str, Any]:
        return {
            "mode": self.params["mode"],
            "found": [excerpt(needle, DETAIL_CHARS) for needle in found],
            "missing": [excerpt(needle, DETAIL_CHARS) for needle in missing],
        }


class Contains(_SubstringScorer):
    name = "contains"
    description = (
        "With mode 'all', the fraction of the strings that appear in the response. "
        "With mode 'any', 1 when at least one appears, else 0."
    )

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        found, missing = self.find(case.response)
        if self.params["mode"] == "any":
            value = 1.0 if found else 0.0
        else:
            value = len(found) / (len(found) + len(missing))
        return value, self.details(found, missing)


class NotContains(_SubstringScorer):
    name = "not_contains"
    description = (
        "With mode 'all', 1 when none of the strings appears in the response, else 0. "
        "With mode 'any', 1 when at least one of them is absent, else 0."
    )

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        found, missing = self.find(case.response)
        absent = bool(missing) if self.params["mode"] == "any" else not found
        return (1.0 if absent else 0.0), self.details(found, missing)


class Regex(Scorer):
    name = "regex"
    description = "1 when the regular expression (Python re syntax) matches the response, else 0."
    default_threshold = 1.0
    parameters = (
        Parameter("pattern", "string", "A Python regular expression.", required=True),
        Parameter("ignore_case", "boolean", "Match case-insensitively.", default=False),
        Parameter(
            "multiline",
            "boolean",
            "Let ^ and $ match at the start and end of each line.",
            default=False,
        ),
        Parameter(
            "full_match",
            "boolean",
            "Require the pattern to match the whole response instead of a part of it.",
            default=False,
        ),
    )

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        try:
            re.compile(params["pattern"], _flags(params))
        except re.error as exc:
            raise ValueError(
                f"parameter 'pattern' is not a valid regular expression: {exc}"
            ) from None

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        # NOTE: Python's re has no time limit, so a pattern with catastrophic
        # backtracking can keep the worker busy for a time that grows
        # exponentially with the length of the response.
        pattern = re.compile(self.params["pattern"], _flags(self.params))
        if self.params["full_match"]:
            match = pattern.fullmatch(case.response)
        else:
            match = pattern.search(case.response)

        if match is None:
            return 0.0, {"match": None, "span": None}
        details = {"match": excerpt(match.group(0), DETAIL_CHARS), "span": list(match.span())}
        return 1.0, details


def _flags(params: dict[str, Any]) -> re.RegexFlag:
    flags = re.RegexFlag(0)
    if params["ignore_case"]:
        flags |= re.IGNORECASE
    if params["multiline"]:
        flags |= re.MULTILINE
    return flags
