"""Request validation and response shapes of the evaluation API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxLengthValidator, MaxValueValidator
from rest_framework import serializers

from llmeval.api.fields import (
    MetricsField,
    SingleEmailField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
)
from llmeval.evaluations.models import Evaluation, Status
from llmeval.notifications.models import Notification
from llmeval.providers.base import GenerationRequest
from llmeval.providers.llamacpp import (
    DEFAULT_CONTEXT_WINDOW,
    MAX_SEED,
    prompt_token_bound,
    prompt_token_count,
)
from llmeval.providers.registry import ModelSpec, registry
from llmeval.scoring import MetricSpecError, default_metrics, parse_metrics

SEED_MAX = MAX_SEED


class EvaluationCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """The body of ``POST /api/evaluate``. Unknown fields are rejected, not ignored."""

    input_prompt = StrictCharField(trim_whitespace=False)
    recipient_email = SingleEmailField(required=False, allow_null=True, allow_blank=True)
    model = StrictCharField(required=False, trim_whitespace=False)
    system_prompt = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    max_new_tokens = StrictIntegerField(required=False, min_value=1)
    temperature = StrictFloatField(required=False, min_value=0.0, max_value=2.0)
    seed = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=SEED_MAX)
    expected_output = StrictCharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    metrics = MetricsField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = settings.MAX_PROMPT_CHARS
        for name in ("input_prompt", "system_prompt", "expected_output"):
            self.fields[name].validators.append(
                MaxLengthValidator(
                    limit,
                    message=f"Ensure this field has no more than {limit} characters "
                    "(MAX_PROMPT_CHARS).",
                )
            )
        self.fields["max_new_tokens"].validators.append(
            MaxValueValidator(
                settings.MAX_NEW_TOKENS_LIMIT,
                message="Ensure this value is less than or equal to "
                f"{settings.MAX_NEW_TOKENS_LIMIT} (MAX_NEW_TOKENS_LIMIT).",
            )
        )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {
                        _printable(name): ["Unknown field; remove it or check its spelling."]
                        for name in unknown
                    }
                )
        validated: dict[str, Any] = super().to_internal_value(data)
        return validated

    def validate_input_prompt(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.", code="blank")
        return value

    def validate_recipient_email(self, value: str | None) -> str | None:
        allowed = settings.RECIPIENT_DOMAINS
        if not value or not allowed:
            return value
        domain = value.rsplit("@", 1)[-1].lower()
        if domain not in allowed:
            raise serializers.ValidationError(
                f"Recipients must be at one of these domains: {', '.join(allowed)} "
                "(RECIPIENT_DOMAINS).",
                code="domain_not_allowed",
            )
        return value

    def validate_model(self, value: str) -> str:
        models = registry().models
        if value not in models:
            names = ", ".join(sorted(models))
            raise serializers.ValidationError(
                f"Unknown model {value!r}. Registered models: {names}. GET /api/models lists them.",
                code="unknown_model",
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("model", registry().default)
        attrs.setdefault(
            "max_new_tokens", min(settings.DEFAULT_MAX_NEW_TOKENS, settings.MAX_NEW_TOKENS_LIMIT)
        )
        attrs.setdefault("temperature", settings.DEFAULT_TEMPERATURE)
        attrs["recipient_email"] = attrs.get("recipient_email") or ""
        attrs["system_prompt"] = attrs.get("system_prompt") or ""
        spec = registry().get(attrs["model"])
        check_credentials(spec)
        check_context_window(spec, attrs)
        attrs["metrics"] = checked_metrics(attrs)
        return attrs

    @property
    def model_spec(self) -> ModelSpec:
        return registry().get(self.validated_data["model"])


def checked_metrics(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Parse the requested metrics (or the defaults) and check the models judges name."""
    has_expected_output = attrs.get("expected_output") is not None
    try:
        if "metrics" in attrs:
            specs = parse_metrics(attrs["metrics"], has_expected_output)
        else:
            specs = default_metrics(has_expected_output)
    except MetricSpecError as exc:
        raise serializers.ValidationError({"metrics": [str(exc)]}) from None

    models = registry().models
    for index, spec in enumerate(specs):
        if spec.name != "judge":
            continue
        judge_model = spec.params["model"]
        if judge_model not in models:
            raise serializers.ValidationError(
                {
                    "metrics": [
                        f"metrics[{index}]: metric 'judge': model {judge_model!r} is not "
                        f"registered; registered models: {', '.join(sorted(models))}"
                    ]
                }
            )
        try:
            check_credentials(models[judge_model])
        except serializers.ValidationError:
            raise serializers.ValidationError(
                {
                    "metrics": [
                        f"metrics[{index}]: metric 'judge': model {judge_model!r} needs "
                        "HF_TOKEN, which is not set on this server"
                    ]
                }
            ) from None
    return [spec.to_dict() for spec in specs]


def _printable(name: str) -> str:
    """Escape lone surrogates, which cannot be encoded in the JSON error response."""
    return name.encode("utf-8", errors="backslashreplace").decode("utf-8")


def check_credentials(spec: ModelSpec) -> None:
    """Reject a Hugging Face model when the server has no token to call it with."""
    if spec.provider == "huggingface" and not spec.base_url and not settings.HF_TOKEN:
        raise serializers.ValidationError(
            {
                "model": [
                    f"Model {spec.name!r} needs a Hugging Face token, and HF_TOKEN is not set "
                    "on this server. Choose a local model or ask the operator to set HF_TOKEN."
                ]
            }
        )


def check_context_window(spec: ModelSpec, attrs: dict[str, Any]) -> None:
    """Reject a local-model request whose prompt and max_new_tokens cannot fit the context."""
    if spec.provider != "llamacpp":
        return

    context = spec.context_window or DEFAULT_CONTEXT_WINDOW
    max_new_tokens = attrs["max_new_tokens"]
    if max_new_tokens >= context:
        raise serializers.ValidationError(
            {
                "max_new_tokens": [
                    f"Must be less than the context window of model {spec.name!r} "
                    f"({context} tokens)."
                ]
            }
        )

    request = GenerationRequest(prompt=attrs["input_prompt"], system_prompt=attrs["system_prompt"])
    bound = prompt_token_bound(spec, request)
    if bound is not None and bound + max_new_tokens <= context:
        return  # Fits even at one token per byte, so counting exactly is not needed.
    prompt_tokens = prompt_token_count(spec, request)
    if prompt_tokens is not None and prompt_tokens + max_new_tokens > context:
        raise serializers.ValidationError(
            {
                "input_prompt": [
                    f"The prompt is {prompt_tokens} tokens; with max_new_tokens={max_new_tokens} "
                    f"it exceeds the context window of model {spec.name!r} ({context} tokens). "
                    "Shorten the prompt or lower max_new_tokens."
                ]
            }
        )


class SubmittedSerializer(serializers.ModelSerializer[Evaluation]):
    """The shape of the 202 body, for the schema; ``submitted_body`` builds the body itself."""

    message = serializers.CharField(read_only=True)

    class Meta:
        model = Evaluation
        fields = ("id", "status", "message")


def submitted_body(evaluation: Evaluation) -> dict[str, str]:
    """Build the body that SubmittedSerializer describes, without its per-request field setup."""
    return {"id": str(evaluation.id), "status": evaluation.status, "message": evaluation.message}


class NotificationSerializer(serializers.ModelSerializer[Notification]):
    error = serializers.CharField(source="last_error")

    class Meta:
        model = Notification
        fields = ("status", "attempts", "sent_at", "error")


class UsageSerializer(serializers.Serializer[Evaluation]):
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)


class ParametersSerializer(serializers.Serializer[Evaluation]):
    max_new_tokens = serializers.IntegerField()
    temperature = serializers.FloatField()
    seed = serializers.IntegerField(allow_null=True)


class ScoreSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    value = serializers.FloatField(allow_null=True, help_text="From 0 to 1; null on error.")
    passed = serializers.BooleanField(
        allow_null=True, help_text="Whether value >= threshold; null without a threshold."
    )
    threshold = serializers.FloatField(allow_null=True)
    details = serializers.DictField(help_text="What the value is made of, per metric.")
    error = serializers.CharField(allow_blank=True)


class MetricSpecSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    params = serializers.DictField()
    threshold = serializers.FloatField(allow_null=True)


class EvaluationSerializer(serializers.ModelSerializer[Evaluation]):
    message = serializers.CharField(read_only=True)
    metrics = MetricSpecSerializer(many=True, read_only=True)
    scores = ScoreSerializer(many=True, read_only=True)
    parameters = ParametersSerializer(source="*", read_only=True)
    usage = UsageSerializer(source="*", read_only=True)
    notification = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = (
            "id",
            "status",
            "message",
            "input_prompt",
            "system_prompt",
            "model",
            "parameters",
            "response",
            "usage",
            "latency_ms",
            "finish_reason",
            "expected_output",
            "metrics",
            "scores",
            "passed",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "completed_at",
            "notification",
        )

    def get_notification(self, evaluation: Evaluation) -> dict[str, Any] | None:
        notification = getattr(evaluation, "notification", None)
        if notification is None:
            return None
        return dict(NotificationSerializer(notification).data)


class MetricParameterSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    type = serializers.CharField()
    description = serializers.CharField()
    required = serializers.BooleanField()  # type: ignore[assignment]
    default = serializers.JSONField(allow_null=True)
    choices = serializers.ListField(child=serializers.CharField())


class MetricDescriptionSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    description = serializers.CharField()
    requires_expected_output = serializers.BooleanField()
    default_threshold = serializers.FloatField(allow_null=True)
    available = serializers.BooleanField()
    unavailable_reason = serializers.CharField(allow_null=True)
    parameters = MetricParameterSerializer(many=True)


class StatusFilterSerializer(serializers.Serializer[dict[str, Any]]):
    status = serializers.ChoiceField(choices=Status.values, required=False)


class ModelSerializer(serializers.Serializer[ModelSpec]):
    name = serializers.CharField()
    provider = serializers.CharField()
    description = serializers.CharField()
    context_window = serializers.IntegerField(allow_null=True)
    max_concurrency = serializers.IntegerField(
        allow_null=True, help_text="Calls in flight across all workers; null when unlimited."
    )
    queue = serializers.CharField()
    default = serializers.SerializerMethodField(method_name="is_default_model")

    def is_default_model(self, spec: ModelSpec) -> bool:
        return spec.name == registry().default
