"""Reject oversized API request bodies before anything reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from llmeval.api.errors import body_too_large_payload


class ApiBodySizeLimitMiddleware:
    """Answer 413 as JSON when an ``/api/`` request declares a body over ``API_MAX_BODY_BYTES``.

    A body sent without ``Content-Length`` is still capped: Django raises
    ``RequestDataTooBig`` when it is read, and the API's exception handler turns
    that into the same 413.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            declared = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(declared)
            except ValueError:
                return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
            if length > settings.API_MAX_BODY_BYTES:
                return JsonResponse(body_too_large_payload(), status=413)
        return self.get_response(request)
