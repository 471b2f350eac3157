"""Django system checks for settings that would otherwise fail only when a task runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from llmeval.providers.registry import ModelConfigError, registry


@checks.register()
def check_models(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        models = registry().models
    except ModelConfigError as exc:
        return [
            checks.Error(
                str(exc), hint="Fix LLMEVAL_MODELS_FILE or the file it names.", id="llmeval.E001"
            )
        ]

    messages: list[checks.CheckMessage] = []
    for spec in models.values():
        if spec.provider == "llamacpp" and spec.path is not None and not spec.path.is_file():
            messages.append(
                checks.Error(
                    f"Model {spec.name!r}: the GGUF file {spec.path} does not exist.",
                    hint="Correct its path in the models file, or remove the model.",
                    id="llmeval.E002",
                )
            )
        if spec.provider == "huggingface" and not spec.base_url and not settings.HF_TOKEN:
            messages.append(
                checks.Warning(
                    f"Model {spec.name!r} calls Hugging Face Inference Providers, "
                    "but HF_TOKEN is not set, so requests for it are rejected.",
                    hint="Set HF_TOKEN, or remove the model from the models file.",
                    id="llmeval.W001",
                )
            )
    return messages


@checks.register()
def check_email(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    mailers: dict[str, Any] = getattr(settings, "MAILERS", {})
    options = mailers.get("default", {}).get("OPTIONS", {})
    if settings.EMAIL_PROVIDER == "resend" and not options.get("api_key"):
        return [
            checks.Error(
                "EMAIL_PROVIDER is resend, but RESEND_API_KEY is not set.",
                hint="Set RESEND_API_KEY (or RESEND_API_KEY_FILE), or choose another provider.",
                id="llmeval.E003",
            )
        ]
    if settings.EMAIL_PROVIDER == "smtp" and not settings.EMAIL_URL_SET:
        return [
            checks.Error(
                "EMAIL_PROVIDER is smtp, but EMAIL_URL is not set.",
                hint="Set EMAIL_URL, for example smtp+tls://user:password@smtp.example.com:587.",
                id="llmeval.E004",
            )
        ]
    return []
