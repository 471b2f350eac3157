"""The evaluation API: submit, read and list evaluations, and list the registered models.

Every query is scoped to the requesting user, so another user's evaluation is
a 404 exactly like one that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from llmeval.api import schema
from llmeval.api.serializers import (
    EvaluationCreateSerializer,
    EvaluationSerializer,
    MetricDescriptionSerializer,
    ModelSerializer,
    StatusFilterSerializer,
    SubmittedSerializer,
    submitted_body,
)
from llmeval.api.throttling import EmailRateThrottle, throttles_for
from llmeval.evaluations import services
from llmeval.evaluations.models import Evaluation
from llmeval.providers.registry import registry
from llmeval.scoring import describe_all

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")


class EvaluationCursorPagination(CursorPagination):
    # UUIDv7 ids sort by creation time, so "-id" is newest first and unique.
    ordering = "-id"
    page_size = settings.API_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                uuid.UUID(str(cursor.position))
        except (NotFound, ValueError):
            raise ValidationError(
                {"cursor": ["Invalid cursor; use the next or previous link of a list response."]}
            ) from None
        return cursor


def visible_evaluations(request: Request) -> QuerySet[Evaluation]:
    """Return the evaluations the requester may see: their own, or the anonymous ones."""
    evaluations = Evaluation.objects.select_related("notification")
    if request.user is not None and request.user.is_authenticated:
        return evaluations.filter(owner=request.user)
    return evaluations.filter(owner__isnull=True)


class ThrottledByMethod(APIView):
    """An API view that needs a key unless ALLOW_ANONYMOUS_ACCESS is on, throttled per key."""

    def get_permissions(self) -> list[Any]:
        if settings.ALLOW_ANONYMOUS_ACCESS:
            return [AllowAny()]
        return [IsAuthenticated()]

    def get_throttles(self) -> list[Any]:
        return throttles_for(self.request.method or "GET")


SUBMIT_EXAMPLE = OpenApiExample(
    "Submit a prompt",
    value={
        "input_prompt": "explain generators in python",
        "recipient_email": "you@example.com",
    },
    request_only=True,
)


EvaluationPageSerializer = inline_serializer(
    name="EvaluationPage",
    fields={
        "next": drf_serializers.URLField(allow_null=True),
        "previous": drf_serializers.URLField(allow_null=True),
        "results": EvaluationSerializer(many=True),
    },
)


class EvaluationListCreateView(ThrottledByMethod):
    @extend_schema(
        operation_id="evaluations_create",
        summary="Submit an evaluation",
        request=EvaluationCreateSerializer,
        examples=[SUBMIT_EXAMPLE],
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Makes a retry return the original evaluation "
                "(1 to 255 printable ASCII characters).",
            )
        ],
        responses={
            202: OpenApiResponse(SubmittedSerializer, description="Stored and queued."),
            400: schema.VALIDATION_ERROR,
            409: schema.detail("The Idempotency-Key was used with another body."),
            411: schema.detail("Chunked bodies are not supported; send Content-Length."),
            413: schema.detail("The body is over API_MAX_BODY_BYTES."),
            415: schema.detail("The Content-Type is not application/json."),
            **schema.COMMON_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        idempotency_key = idempotency_key_from(request)
        serializer = EvaluationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["recipient_email"]:
            self._check_email_rate(request)

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
            owner_id=request.user.pk if request.user is not None else None,
            expected_output=data.get("expected_output"),
            metrics=data["metrics"],
        )
        try:
            evaluation, created = services.submit(submission)
        except services.IdempotencyConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)

        headers = {"Location": request.build_absolute_uri(f"/api/evaluate/{evaluation.id}")}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return Response(
            submitted_body(evaluation), status=status.HTTP_202_ACCEPTED, headers=headers
        )

    def _check_email_rate(self, request: Request) -> None:
        throttle = EmailRateThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait() or 1.0)

    @extend_schema(
        operation_id="evaluations_list",
        summary="List evaluations, newest first",
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=["pending", "running", "completed", "failed"]
            ),
            OpenApiParameter(
                "cursor", OpenApiTypes.STR, description="From a next or previous link."
            ),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="1 to 200."),
        ],
        responses={200: EvaluationPageSerializer, **schema.READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = StatusFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)

        queryset = visible_evaluations(request)
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


class EvaluationDetailView(ThrottledByMethod):
    @extend_schema(
        operation_id="evaluations_retrieve",
        summary="Read one evaluation",
        responses={
            200: EvaluationSerializer,
            404: schema.detail("No evaluation with this id is visible to this key."),
            **schema.COMMON_ERRORS,
        },
    )
    def get(self, request: Request, evaluation_id: str) -> Response:
        try:
            key = uuid.UUID(evaluation_id)
        except ValueError:
            raise NotFound(f"No evaluation with id {evaluation_id!r}.") from None

        evaluation = visible_evaluations(request).filter(pk=key).first()
        if evaluation is None:
            raise NotFound(f"No evaluation with id {evaluation_id!r}.")
        return Response(EvaluationSerializer(evaluation).data)


ModelListSerializer = inline_serializer(
    name="ModelList",
    fields={"default": drf_serializers.CharField(), "results": ModelSerializer(many=True)},
)


class ModelListView(ThrottledByMethod):
    @extend_schema(
        operation_id="models_list",
        summary="List the registered models",
        responses={200: ModelListSerializer, **schema.COMMON_ERRORS},
    )
    def get(self, request: Request) -> Response:
        models = registry()
        results = [ModelSerializer(spec).data for spec in models.models.values()]
        return Response({"default": models.default, "results": results})


MetricListSerializer = inline_serializer(
    name="MetricList", fields={"results": MetricDescriptionSerializer(many=True)}
)


class MetricListView(ThrottledByMethod):
    @extend_schema(
        operation_id="metrics_list",
        summary="List the scorers, with their parameters",
        responses={200: MetricListSerializer, **schema.COMMON_ERRORS},
    )
    def get(self, request: Request) -> Response:
        results = [MetricDescriptionSerializer(item).data for item in describe_all()]
        return Response({"results": results})


class HealthView(APIView):
    """Report whether the API can reach its database; open to load balancers without a key."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        operation_id="health",
        summary="Check the API and its database",
        auth=[],
        responses={
            200: inline_serializer("Health", {"status": drf_serializers.CharField()}),
            503: schema.detail("The database is unavailable."),
            500: schema.detail("Internal error."),
            405: schema.detail("Method not allowed."),
            406: schema.detail("Not acceptable."),
        },
    )
    def get(self, request: Request) -> Response:
        connection.ensure_connection()
        return Response({"status": "ok"})
