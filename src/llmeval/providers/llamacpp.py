"""Local GGUF models run in the worker process by llama-cpp-python."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.conf import settings

from llmeval.providers.base import Generation, GenerationRequest, Provider
from llmeval.providers.errors import PermanentProviderError
from llmeval.providers.registry import ModelSpec

logger = logging.getLogger(__name__)

PROVIDER_NAME = "llamacpp"
DEFAULT_CONTEXT_WINDOW = 2048

# One model is loaded per process: a request for another model unloads the
# current one. The lock also keeps generation to one at a time per loaded model,
# because a llama.cpp context is not safe to use from two threads at once.
_lock = threading.Lock()
_loaded: tuple[str, Any] | None = None


class LlamaCppProvider(Provider):
    def __init__(self, spec: ModelSpec) -> None:
        if spec.path is None:
            raise ValueError(f"Model {spec.name!r} has no GGUF path.")
        self.spec = spec
        self.path = spec.path

    def generate(self, request: GenerationRequest) -> Generation:
        with _lock:
            llama = self._load()
            # Evaluate every prompt from an empty context. Reusing the previous
            # request's cached prefix changes the logits slightly, and then the
            # same seed no longer reproduces the same answer.
            llama.reset()
            started = time.perf_counter()
            try:
                result = llama.create_chat_completion(
                    messages=request.messages(),
                    max_tokens=request.max_new_tokens,
                    temperature=request.temperature,
                    seed=request.seed,
                )
            except ValueError as exc:
                # llama-cpp-python raises ValueError when the prompt and
                # max_tokens do not fit the context window.
                raise PermanentProviderError(
                    f"the request does not fit the model's context window: {exc}; "
                    "shorten the prompt or lower max_new_tokens",
                    provider=PROVIDER_NAME,
                ) from None
            latency_ms = round((time.perf_counter() - started) * 1000)

        return _to_generation(result, latency_ms)

    def _load(self) -> Any:
        global _loaded

        if _loaded is not None and _loaded[0] == self.spec.name:
            return _loaded[1]
        if not self.path.is_file():
            raise PermanentProviderError(
                f"the GGUF file for model {self.spec.name!r} was not found at {self.path}",
                provider=PROVIDER_NAME,
            )

        from llama_cpp import Llama

        _loaded = None
        started = time.perf_counter()
        llama = Llama(
            model_path=str(self.path),
            n_ctx=self.spec.context_window or DEFAULT_CONTEXT_WINDOW,
            n_threads=settings.LOCAL_MODEL_THREADS or os.cpu_count() or 1,
            verbose=False,
        )
        _loaded = (self.spec.name, llama)
        logger.info(
            "local_model.loaded model=%s seconds=%.2f",
            self.spec.name,
            time.perf_counter() - started,
        )
        return llama


def _to_generation(result: Any, latency_ms: int) -> Generation:
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    return Generation(
        text=choice["message"].get("content") or "",
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        latency_ms=latency_ms,
        finish_reason=choice.get("finish_reason") or "",
        request_id=str(result.get("id", "")),
    )
