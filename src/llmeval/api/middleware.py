"""Reject oversized API request bodies before anything reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from llmeval.api.errors import body_too_large_payload


class ApiBodySizeLimitMiddleware:
    """Check the declared size of ``/api/`` request bodies before anything reads them.

    A body over ``API_MAX_BODY_BYTES`` gets a JSON 413. A chunked body gets a
    JSON 411: Django reads a WSGI body only up to ``Content-Length``, so without
    that header it would see an empty body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            if "HTTP_TRANSFER_ENCODING" in request.META:
                return JsonResponse(
                    {
                        "detail": "Chunked request bodies are not supported; "
                        "send the body with a Content-Length header."
                    },
                    status=411,
                )
            declared = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(declared)
            except ValueError:
                return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
            if length > settings.API_MAX_BODY_BYTES:
                return JsonResponse(body_too_large_payload(), status=413)
        return self.get_response(request)
