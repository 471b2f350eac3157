"""Remote models through huggingface_hub's InferenceClient.

Without ``base_url`` a model is called through Hugging Face Inference Providers:
the router's OpenAI-compatible endpoint (``HF_ROUTER_URL``, by default
https://router.huggingface.co/v1) with ``HF_TOKEN``. With ``base_url`` it calls
any OpenAI-compatible or TGI server, sending a token only when the model names
one in ``token_env``, so the Hugging Face token never goes to a third party.
"""

from __future__ import annotations

import os
import time

import httpx2
from django.conf import settings
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

from llmeval.providers.base import Generation, GenerationRequest, Provider
from llmeval.providers.errors import (
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from llmeval.providers.registry import ModelSpec

PROVIDER_NAME = "huggingface"
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
PERMANENT_HINTS = {
    400: "the provider rejected the request as invalid",
    401: "the provider rejected the credentials: check HF_TOKEN or the model's token_env",
    403: "the token is not allowed to use this model: check its permissions",
    404: "model not found at this provider: check the model name",
    410: "this model is no longer served by the provider: choose another model",
    413: "the request is too large for the provider: shorten the prompt",
    422: "the provider could not process the request parameters",
}


class HuggingFaceProvider(Provider):
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.url = spec.base_url or settings.HF_ROUTER_URL
        self.payload_model = _payload_model(spec)
        self.client = InferenceClient(
            base_url=self.url,
            token=self._token(),
            timeout=settings.PROVIDER_TIMEOUT_SECONDS,
        )

    def _token(self) -> str | None:
        if self.spec.token_env:
            return os.environ.get(self.spec.token_env) or None
        if self.spec.base_url:
            return None
        token: str | None = settings.HF_TOKEN
        return token

    def generate(self, request: GenerationRequest) -> Generation:
        started = time.perf_counter()
        try:
            output = self.client.chat_completion(
                messages=list(request.messages()),
                model=self.payload_model,
                max_tokens=request.max_new_tokens,
                temperature=request.temperature,
                seed=request.seed,
            )
        except InferenceTimeoutError:
            raise TransientProviderError(
                f"the call timed out after {settings.PROVIDER_TIMEOUT_SECONDS:g} seconds",
                provider=PROVIDER_NAME,
            ) from None
        except HfHubHTTPError as exc:
            raise _from_http_error(exc) from None
        except httpx2.TransportError as exc:
            raise TransientProviderError(
                f"cannot connect to {self.url}: {type(exc).__name__}", provider=PROVIDER_NAME
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentProviderError(
                f"the provider returned a response that is not a chat completion: {exc}",
                provider=PROVIDER_NAME,
            ) from None
        latency_ms = round((time.perf_counter() - started) * 1000)

        if not output.choices:
            raise PermanentProviderError(
                "the provider returned a chat completion with no choices", provider=PROVIDER_NAME
            )
        choice = output.choices[0]
        usage = output.usage
        return Generation(
            text=choice.message.content or "",
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            latency_ms=latency_ms,
            finish_reason=choice.finish_reason or "",
            request_id=output.id or "",
        )


def _payload_model(spec: ModelSpec) -> str | None:
    """Return the ``model`` field of the request body.

    The router picks a provider from a ``model:provider`` suffix, and an
    OpenAI-compatible server serves the model it is given, or its only model.
    """
    if not spec.model_id:
        return None
    if spec.hf_provider and not spec.base_url:
        return f"{spec.model_id}:{spec.hf_provider}"
    return spec.model_id


def _from_http_error(exc: HfHubHTTPError) -> ProviderError:
    response = exc.response
    status = response.status_code
    request_id = exc.request_id or ""
    body = _safe_text(response)
    detail = exc.server_message or body[:200]

    if status in TRANSIENT_STATUSES:
        return TransientProviderError(
            f"the provider is unavailable or rate limited: {detail}".rstrip(": "),
            provider=PROVIDER_NAME,
            status=status,
            request_id=request_id,
            body=body,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    hint = PERMANENT_HINTS.get(status, "the provider rejected the request")
    message = f"{hint}: {detail}" if detail else hint
    return PermanentProviderError(
        message, provider=PROVIDER_NAME, status=status, request_id=request_id, body=body
    )


def _safe_text(response: httpx2.Response) -> str:
    try:
        return response.text
    except (httpx2.ResponseNotRead, UnicodeDecodeError):
        return ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
