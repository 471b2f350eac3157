"""Serializer fields that accept only the JSON type they declare.

DRF's stock fields coerce: ``IntegerField`` takes ``"12"`` and ``CharField``
takes ``12``. An evaluation API is clearer when ``"max_new_tokens": "12"`` is an
error naming the expected type.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Characters that would let a value add headers to an email or a second recipient.
_EMAIL_FORBIDDEN = re.compile(r"[\s,;<>\"'()\\\x00-\x1f\x7f]")


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if not math.isfinite(data):
            self.fail("invalid")
        return super().to_internal_value(data)


def _has_format_character(text: str) -> bool:
    """Tell whether ``text`` has invisible format characters such as U+200B."""
    return any(unicodedata.category(char) == "Cf" for char in text)


@extend_schema_field(
    {
        "type": "array",
        "maxItems": 20,
        "description": "Metric names, or objects with a name, an optional threshold from 0 "
        "to 1, and the metric's parameters (inline or under 'params'). "
        "GET /api/metrics lists them.",
        "items": {
            "oneOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "threshold": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "nullable": True,
                        },
                        "params": {"type": "object"},
                    },
                    "additionalProperties": True,
                },
            ]
        },
        "example": ["exact_match", "rouge_l", {"name": "contains", "value": "yield"}],
    }
)
class MetricsField(serializers.Field):  # type: ignore[type-arg]
    """The raw ``metrics`` value; the serializer checks it with the scoring registry."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class SingleEmailField(serializers.EmailField):
    """One bare address (``user@example.com``): no display name, list or line break."""

    default_error_messages = {
        "not_a_string": "Must be a string holding one email address.",
        "forbidden_characters": (
            "Must be one bare email address such as user@example.com, without spaces, "
            "line breaks, commas, semicolons, quotes, angle brackets or encoded words."
        ),
        "domain": "The domain must be a public host name such as example.com (no IP "
        "addresses, no single-label names, labels of at most 63 characters).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 254)
        kwargs["trim_whitespace"] = False
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        if _EMAIL_FORBIDDEN.search(data) or "=?" in data or _has_format_character(data):
            self.fail("forbidden_characters")
        value: str = super().to_internal_value(data)
        return value

    def run_validation(self, data: Any = serializers.empty) -> Any:
        value = super().run_validation(data)
        if not value:
            return value
        # The validators have accepted it by now, so it has exactly one usable "@".
        local_part, domain = value.rsplit("@", 1)
        return f"{local_part}@{self._checked_domain(domain)}"

    def _checked_domain(self, domain: str) -> str:
        """Return the domain in its ASCII (punycode) form, which is what is delivered to."""
        if domain.startswith("[") or "." not in domain:
            self.fail("domain")
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            self.fail("domain")
        if len(ascii_domain) > 253:
            self.fail("domain")
        return ascii_domain.lower()
