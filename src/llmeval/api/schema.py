"""OpenAPI pieces shared by the views: the error shapes and the bearer-key security scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

DetailErrorSerializer = inline_serializer(
    name="DetailError",
    fields={
        "detail": serializers.CharField(),
        "error_id": serializers.CharField(
            required=False, help_text="Only on a 500; the same id is in the server log."
        ),
    },
)


def _field_errors_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Validation errors keyed by field name; each value lists the broken rules.",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    }


VALIDATION_ERROR = OpenApiResponse(
    response={"oneOf": [{"$ref": "#/components/schemas/DetailError"}, _field_errors_schema()]},
    description="Invalid input (field errors) or a body that is not valid JSON (detail); "
    "nothing was stored.",
    examples=[
        OpenApiExample(
            "Out-of-range parameter",
            value={"max_new_tokens": ["Ensure this value is less than or equal to 4096."]},
        )
    ],
)


def detail(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=DetailErrorSerializer, description=description)


def _detail_or_fields(description: str) -> OpenApiResponse:
    schema = {"oneOf": [{"$ref": "#/components/schemas/DetailError"}, _field_errors_schema()]}
    return OpenApiResponse(response=schema, description=description)


COMMON_ERRORS = {
    401: detail("Missing, invalid, expired or revoked API key."),
    403: detail("The key may not do this."),
    405: detail("Method not allowed on this path."),
    406: detail("The Accept header asks for a format other than JSON."),
    429: detail("Rate limit exceeded; the Retry-After header gives the seconds to wait."),
    500: detail("Internal error; quote error_id when reporting it."),
    503: detail("The database is unavailable; retry after Retry-After seconds."),
}

READ_ERRORS = {400: _detail_or_fields("Invalid query parameter."), **COMMON_ERRORS}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "llmeval.accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from 'llmeval apikey create' or the admin.",
        }
