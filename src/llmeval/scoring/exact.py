"""Exact match against the expected output, after optional normalisation."""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Any

from llmeval.scoring.base import Parameter, Scorer, ScoringCase
from llmeval.text import excerpt

DETAIL_CHARS = 200

_WHITESPACE_RUN = re.compile(r"\s+")


class ExactMatch(Scorer):
    name = "exact_match"
    description = (
        "1 when the response equals the expected output after the chosen normalisation, else 0."
    )
    requires_expected_output = True
    default_threshold = 1.0
    parameters = (
        Parameter(
            "ignore_case",
            "boolean",
            "Compare case-insensitively (Unicode case folding).",
            default=False,
        ),
        Parameter(
            "strip",
            "boolean",
            "Remove white space at the start and end of both texts.",
            default=True,
        ),
        Parameter(
            "ignore_punctuation",
            "boolean",
            "Remove punctuation: Unicode categories P* and the ASCII characters of "
            "Python's string.punctuation.",
            default=False,
        ),
        Parameter(
            "collapse_whitespace",
            "boolean",
            "Replace each run of white space with one space.",
            default=False,
        ),
    )

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        response = self.normalise(case.response)
        expected = self.normalise(case.expected_output or "")
        details = {
            "response": excerpt(response, DETAIL_CHARS),
            "expected": excerpt(expected, DETAIL_CHARS),
        }
        return (1.0 if response == expected else 0.0), details

    def normalise(self, text: str) -> str:
        """Apply the enabled normalisations: punctuation, then white space, then case."""
        # Punctuation goes first so that "Paris ." still becomes "Paris" after stripping.
        if self.params["ignore_punctuation"]:
            text = "".join(char for char in text if not _is_punctuation(char))
        if self.params["collapse_whitespace"]:
            text = _WHITESPACE_RUN.sub(" ", text)
        if self.params["strip"]:
            text = text.strip()
        if self.params["ignore_case"]:
            text = text.casefold()
        return text


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")
