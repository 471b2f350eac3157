"""Checks that the response is JSON, and that it is valid against a JSON Schema."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from llmeval.scoring.base import Parameter, Scorer, ScoringCase
from llmeval.text import excerpt

MAX_REPORTED_ERRORS = 5
DETAIL_CHARS = 200

# A fence around the whole response: ``` or ```json on the first line, ``` on the last.
_FENCE = re.compile(r"\A\s*```(?:json)?[ \t]*\n(?P<body>.*?)\n?[ \t]*```\s*\Z", re.DOTALL | re.I)


def parse_json_response(text: str) -> tuple[Any, bool]:
    """Parse the response as JSON, returning the value and whether a code fence was removed.

    Raises json.JSONDecodeError. NaN and Infinity are rejected because they are
    not JSON, although Python's json module accepts them by default.
    """
    match = _FENCE.match(text)
    body = match.group("body") if match else text
    return json.loads(body, parse_constant=_reject_constant), match is not None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class IsJson(Scorer):
    name = "is_json"
    description = (
        "1 when the response parses as JSON, after removing a ```json code fence "
        "around the whole response, else 0."
    )
    default_threshold = 1.0

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        try:
            value, fenced = parse_json_response(case.response)
        except json.JSONDecodeError as exc:
            return 0.0, _decode_error_details(exc)
        except ValueError as exc:
            return 0.0, {"error": str(exc)}
        return 1.0, {"fenced": fenced, "type": _json_type(value)}


class JsonSchema(Scorer):
    name = "json_schema"
    description = (
        "1 when the response is JSON (a surrounding ```json fence is removed) that is "
        "valid against the schema, else 0. The schema's $schema picks the draft, "
        "2020-12 by default. 'format' is not checked, and a $ref to another "
        "document is not fetched."
    )
    default_threshold = 1.0
    parameters = (
        Parameter("schema", "object", "The JSON Schema the response must satisfy.", required=True),
    )

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> None:
        schema = params["schema"]
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            raise ValueError(
                f"parameter 'schema' is not a valid JSON Schema: {exc.message}"
            ) from None

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        try:
            instance, fenced = parse_json_response(case.response)
        except json.JSONDecodeError as exc:
            return 0.0, {"valid": False, "json_error": _decode_error_details(exc)}
        except ValueError as exc:
            return 0.0, {"valid": False, "json_error": {"error": str(exc)}}

        schema = self.params["schema"]
        validator = validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(instance), key=lambda error: error.json_path)
        details = {
            "valid": not errors,
            "fenced": fenced,
            "error_count": len(errors),
            "errors": [
                {"path": error.json_path, "message": excerpt(error.message, DETAIL_CHARS)}
                for error in errors[:MAX_REPORTED_ERRORS]
            ],
        }
        return (0.0 if errors else 1.0), details


def _decode_error_details(exc: json.JSONDecodeError) -> dict[str, Any]:
    return {"error": exc.msg, "line": exc.lineno, "column": exc.colno, "position": exc.pos}


def _json_type(value: Any) -> str:
    match value:
        case dict():
            return "object"
        case list():
            return "array"
        case str():
            return "string"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case _:
            return "null"
