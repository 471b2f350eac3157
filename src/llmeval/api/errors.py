"""One JSON error shape for the API.

Validation errors keep DRF's field-keyed shape; every other error is ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn every exception raised in an API view into a JSON response."""
    response = exception_handler(exc, context)
    if response is not None:
        return response

    if isinstance(exc, RequestDataTooBig):
        return Response(body_too_large_payload(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)

    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("api.database_unavailable error=%s", type(exc).__name__)
        return Response(
            {"detail": "The database is unavailable; retry shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    error_id = uuid.uuid4().hex
    logger.exception("api.internal_error error_id=%s", error_id)
    kind = "database error" if isinstance(exc, DatabaseError) else "internal error"
    return Response(
        {
            "detail": f"An {kind} occurred. Quote error id {error_id} when reporting it.",
            "error_id": error_id,
        },
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def body_too_large_payload() -> dict[str, str]:
    from django.conf import settings

    return {
        "detail": f"The request body exceeds the limit of {settings.API_MAX_BODY_BYTES} bytes "
        "(API_MAX_BODY_BYTES)."
    }


def is_api_path(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 view (for example a disallowed Host header), as JSON under /api/."""
    if not is_api_path(request):
        return defaults.bad_request(request, exception)
    return JsonResponse({"detail": "Bad request: invalid Host header or request."}, status=400)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_path(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if not is_api_path(request):
        return defaults.server_error(request)
    error_id = uuid.uuid4().hex
    logger.error("api.internal_error error_id=%s path=%s", error_id, request.path)
    return JsonResponse(
        {
            "detail": f"An internal error occurred. Quote error id {error_id} when reporting it.",
            "error_id": error_id,
        },
        status=500,
    )
