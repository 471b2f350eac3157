"""The evaluation API: submit, read and list evaluations, and list the registered models."""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from django.conf import settings
from django.db import connection
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from llmeval.api.serializers import (
    EvaluationCreateSerializer,
    EvaluationSerializer,
    ModelSerializer,
    StatusFilterSerializer,
    SubmittedSerializer,
)
from llmeval.evaluations import services
from llmeval.evaluations.models import Evaluation
from llmeval.providers.registry import registry

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


class EvaluationCursorPagination(CursorPagination):
    # UUIDv7 ids sort by creation time, so "-id" is newest first and unique.
    ordering = "-id"
    page_size = settings.API_PAGE_SIZE

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                {"cursor": ["Invalid cursor; use the next or previous link of a list response."]}
            ) from None

    page_size_query_param = "page_size"
    max_page_size = 200


class EvaluationListCreateView(APIView):
    def post(self, request: Request) -> Response:
        idempotency_key = idempotency_key_from(request)
        serializer = EvaluationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        submission = services.Submission(
            input_prompt=data["input_prompt"],
            system_prompt=data["system_prompt"],
            model=data["model"],
            max_new_tokens=data["max_new_tokens"],
            temperature=data["temperature"],
            seed=data.get("seed"),
            recipient_email=data["recipient_email"],
            queue=serializer.model_spec.queue,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint(request.data),
        )
        try:
            evaluation, created = services.submit(submission)
        except services.IdempotencyConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)

        headers = {"Location": request.build_absolute_uri(f"/api/evaluate/{evaluation.id}")}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return Response(
            SubmittedSerializer(evaluation).data, status=status.HTTP_202_ACCEPTED, headers=headers
        )

    def get(self, request: Request) -> Response:
        filters = StatusFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)

        queryset = Evaluation.objects.select_related("notification")
        if "status" in filters.validated_data:
            queryset = queryset.filter(status=filters.validated_data["status"])

        paginator = EvaluationCursorPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(EvaluationSerializer(page, many=True).data)


def idempotency_key_from(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise ValidationError(
            {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters, such as a UUID."]}
        )
    return key


def fingerprint(data: object) -> str:
    """Hash the request body so a replayed key can be checked against its original body."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()


class EvaluationDetailView(APIView):
    def get(self, request: Request, evaluation_id: str) -> Response:
        try:
            key = uuid.UUID(evaluation_id)
        except ValueError:
            raise NotFound(f"No evaluation with id {evaluation_id!r}.") from None

        evaluation = Evaluation.objects.select_related("notification").filter(pk=key).first()
        if evaluation is None:
            raise NotFound(f"No evaluation with id {evaluation_id!r}.")
        return Response(EvaluationSerializer(evaluation).data)


class ModelListView(APIView):
    def get(self, request: Request) -> Response:
        models = registry()
        results = [ModelSerializer(spec).data for spec in models.models.values()]
        return Response({"default": models.default, "results": results})


class HealthView(APIView):
    """Report whether the API can reach its database."""

    def get(self, request: Request) -> Response:
        connection.ensure_connection()
        return Response({"status": "ok"})
