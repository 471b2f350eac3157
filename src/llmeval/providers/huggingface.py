"""Remote models through huggingface_hub's InferenceClient.

Without ``base_url`` a model is called through Hugging Face Inference Providers:
the router's OpenAI-compatible endpoint (``HF_ROUTER_URL``, by default
https://router.huggingface.co/v1) with ``HF_TOKEN``. With ``base_url`` it calls
any OpenAI-compatible or TGI server, sending a token only when the model names
one in ``token_env``, so the Hugging Face token never goes to a third party.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2
from django.conf import settings
from huggingface_hub import ChatCompletionOutput, InferenceClient, set_client_factory
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from huggingface_hub.utils._http import hf_request_event_hook

from llmeval.env import load_env
from llmeval.providers.base import Generation, GenerationRequest, Provider
from llmeval.providers.errors import (
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from llmeval.providers.registry import ModelSpec

PROVIDER_NAME = "huggingface"
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# An error text with one of these words describes a passing condition.
TRANSIENT_ERROR_WORDS = re.compile(
    r"loading|overloaded|busy|unavailable|rate.?limit|timed? ?out|try again", re.IGNORECASE
)
CONTEXT_ERROR_WORDS = re.compile(
    r"context (length|window)|maximum context|too many tokens|input is too long|too long",
    re.IGNORECASE,
)
UNSUPPORTED_TASK_WORDS = re.compile(r"not supported for task|does not support|unsupported task")
# A shorter prompt at the start of an answer is more likely a quote than an echo.
ECHO_MIN_CHARS = 20
PERMANENT_HINTS = {
    400: "the provider rejected the request as invalid",
    401: "the provider rejected the credentials: check HF_TOKEN or the model's token_env",
    403: "the token is not allowed to use this model: check its permissions",
    404: "model not found at this provider: check the model name",
    410: "this model is no longer served by the provider: choose another model",
    413: "the request is too large for the provider: shorten the prompt",
    422: "the provider could not process the request parameters",
}


_http_client_configured = False
_http_client_lock = threading.Lock()


def _configure_http_client() -> None:
    """Configure huggingface_hub's shared HTTP client and turn off its telemetry.

    With httpx2's default pool, calls beyond about 25 in flight from one
    process waited about 5 seconds each (seen with huggingface_hub 2.4 and
    httpx2 2.16, 60 threads, bench/bench_end_to_end.py). Explicit limits remove
    the wait, so a threads worker can keep its whole concurrency in flight.

    huggingface_hub 2.4 builds the user-agent of each request with
    ``detect_agent()``, which on a process's first requests fetches
    https://huggingface.co/api/agent-harnesses unless telemetry is off. It does
    so whatever the model's ``base_url``, from every thread that calls before
    the first fetch ends. Where resolving huggingface.co timed out, those first
    calls took 5 to 11 s instead of 0.5 s (bench/bench_end_to_end.py, 2
    workers of 32 threads). A HF_HUB_DISABLE_TELEMETRY set in the environment is
    left to huggingface_hub.
    """
    global _http_client_configured
    with _http_client_lock:
        if _http_client_configured:
            return
        if "HF_HUB_DISABLE_TELEMETRY" not in os.environ:
            # huggingface_hub reads this constant at each request, so setting it
            # works even after the package was imported.
            hf_constants.HF_HUB_DISABLE_TELEMETRY = True
        limits = httpx2.Limits(
            max_connections=settings.REMOTE_HTTP_MAX_CONNECTIONS,
            max_keepalive_connections=settings.REMOTE_HTTP_MAX_CONNECTIONS,
            keepalive_expiry=30.0,
        )
        set_client_factory(
            lambda: httpx2.Client(
                event_hooks={"request": [hf_request_event_hook]},
                follow_redirects=True,
                timeout=None,
                limits=limits,
            )
        )
        _http_client_configured = True


class HuggingFaceProvider(Provider):
    def __init__(self, spec: ModelSpec) -> None:
        _configure_http_client()
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
            return load_env().optional_str(self.spec.token_env)
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
        except json.JSONDecodeError:
            raise PermanentProviderError(
                "the provider returned a body that is not JSON; check that the model's "
                "base_url points at a chat-completion API",
                provider=PROVIDER_NAME,
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentProviderError(
                f"the provider returned a response that is not a chat completion: {exc}",
                provider=PROVIDER_NAME,
            ) from None
        latency_ms = round((time.perf_counter() - started) * 1000)
        return _read_output(output, request, latency_ms)


def _read_output(
    output: ChatCompletionOutput, request: GenerationRequest, latency_ms: int
) -> Generation:
    """Check the shape of a parsed chat completion and build the generation from it."""
    error = getattr(output, "error", None)
    if error:
        # Some servers return 200 with {"error": ...} instead of an error status.
        message = f"the provider returned an error with HTTP 200: {str(error)[:300]}"
        if TRANSIENT_ERROR_WORDS.search(str(error)):
            raise TransientProviderError(message, provider=PROVIDER_NAME)
        raise PermanentProviderError(message, provider=PROVIDER_NAME)

    if not output.choices:
        raise PermanentProviderError(
            "the provider returned a chat completion with no choices", provider=PROVIDER_NAME
        )
    choice = output.choices[0]
    if choice.message is None:
        raise PermanentProviderError(
            "the provider returned a choice without a message", provider=PROVIDER_NAME
        )

    usage = output.usage
    return Generation(
        text=_strip_echoed_prompt(_content_text(choice.message.content), request.prompt),
        input_tokens=usage.prompt_tokens if usage else None,
        output_tokens=usage.completion_tokens if usage else None,
        latency_ms=latency_ms,
        finish_reason=choice.finish_reason or "",
        request_id=output.id or "",
    )


def _content_text(content: object) -> str:
    """Return the text of a message, whose content is a string or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return "".join(part for part in parts if isinstance(part, str))
    raise PermanentProviderError(
        f"the provider returned message content of type {type(content).__name__}",
        provider=PROVIDER_NAME,
    )


def _strip_echoed_prompt(text: str, prompt: str) -> str:
    """Remove the prompt from the start of the answer, as servers that echo it return it."""
    stripped_prompt = prompt.strip()
    answer = text.lstrip()
    if len(stripped_prompt) >= ECHO_MIN_CHARS and answer.startswith(stripped_prompt):
        return answer[len(stripped_prompt) :].lstrip()
    return text


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
    detail = (exc.server_message or body[:200]).strip()

    if status in TRANSIENT_STATUSES:
        loading_seconds = _estimated_loading_time(body)
        if loading_seconds is not None:
            message = f"the model is loading at the provider (estimated {loading_seconds:g} s)"
        else:
            message = f"the provider is unavailable or rate limited: {detail}".rstrip(": ")
        retry_after = _retry_after(response.headers.get("Retry-After"))
        return TransientProviderError(
            message,
            provider=PROVIDER_NAME,
            status=status,
            request_id=request_id,
            body=body,
            retry_after=max(filter(None, (retry_after, loading_seconds)), default=None),
        )

    hint = PERMANENT_HINTS.get(status, "the provider rejected the request")
    if CONTEXT_ERROR_WORDS.search(body):
        hint = (
            "the prompt is longer than the model's context window: "
            "shorten it or lower max_new_tokens"
        )
    elif UNSUPPORTED_TASK_WORDS.search(body):
        hint = "this model does not support chat completion at this provider: choose another model"
    message = f"{hint} ({detail})" if detail else hint
    return PermanentProviderError(
        message, provider=PROVIDER_NAME, status=status, request_id=request_id, body=body
    )


def _estimated_loading_time(body: str) -> float | None:
    """Read ``estimated_time`` from a Hugging Face "model is loading" 503 body."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    estimate = data.get("estimated_time")
    if isinstance(estimate, int | float) and not isinstance(estimate, bool) and estimate >= 0:
        return float(estimate)
    if "loading" in str(data.get("error", "")).lower():
        return 0.0
    return None


def _safe_text(response: httpx2.Response) -> str:
    try:
        return response.text
    except (httpx2.ResponseNotRead, UnicodeDecodeError):
        return ""


def _retry_after(value: str | None) -> float | None:
    """Parse a Retry-After header: delay seconds or an HTTP date (RFC 9110, section 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
