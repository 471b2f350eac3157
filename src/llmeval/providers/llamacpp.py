"""Local GGUF models run in the worker process by llama-cpp-python."""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings

from llmeval.providers.base import Generation, GenerationRequest, Provider
from llmeval.providers.errors import PermanentProviderError
from llmeval.providers.registry import ModelSpec

logger = logging.getLogger(__name__)

PROVIDER_NAME = "llamacpp"
DEFAULT_CONTEXT_WINDOW = 2048
# llama.cpp reads 0xFFFFFFFF as "choose a random seed", so the largest usable seed is one less.
MAX_SEED = 2**32 - 2

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
            # same seed no longer reproduces the same response.
            llama.reset()
            # Without a seed llama-cpp-python derives one from the previous call,
            # so "no seed" would repeat; draw one and report it so it can be reused.
            seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
            started = time.perf_counter()
            try:
                result = llama.create_chat_completion(
                    messages=request.messages(),
                    max_tokens=request.max_new_tokens,
                    temperature=request.temperature,
                    seed=seed,
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

        return _to_generation(result, latency_ms, seed)

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


_tokenizers: dict[Path, tuple[Any, Any]] = {}
_tokenizers_lock = threading.Lock()
_template_overheads: dict[tuple[Path, bool], int] = {}


def prompt_token_count(spec: ModelSpec, request: GenerationRequest) -> int | None:
    """Count the tokens of a request's chat prompt with the model's own tokenizer and template.

    Only the vocabulary is loaded (a fraction of a second and tens of MB for
    SmolLM2), so the API can reject a prompt that cannot fit the context window
    before it is queued. Returns None when the file or its template is missing,
    leaving the worker to decide.
    """
    if spec.path is None or not spec.path.is_file():
        return None
    tokenizer = _tokenizer(spec.path)
    if tokenizer is None:
        return None

    llama, formatter = tokenizer
    with _tokenizers_lock:
        prompt = formatter(messages=request.messages()).prompt
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    return len(tokens)


def prompt_token_bound(spec: ModelSpec, request: GenerationRequest) -> int | None:
    """Return an upper bound of ``prompt_token_count`` that costs no tokenizing, or None.

    Each token covers at least one byte of the rendered prompt, so the prompt's
    UTF-8 length bounds the count, plus one for the BOS token and one for a
    SentencePiece dummy prefix. The template's own bytes are measured once per
    model and message layout.
    """
    if spec.path is None or not spec.path.is_file():
        return None
    overhead = _template_overhead(spec.path, has_system=bool(request.system_prompt))
    if overhead is None:
        return None
    content = len(request.prompt.encode("utf-8"))
    if request.system_prompt:
        content += len(request.system_prompt.encode("utf-8"))
    return overhead + content + 2


def _template_overhead(path: Path, *, has_system: bool) -> int | None:
    """Return the bytes that the chat template adds around the messages' contents."""
    key = (path, has_system)
    if key in _template_overheads:
        return _template_overheads[key]
    tokenizer = _tokenizer(path)
    if tokenizer is None:
        return None
    # NOTE: this assumes the template copies each content once and adds the same
    # bytes whatever the content is, which holds for the usual chat templates.
    sample = GenerationRequest(prompt="x", system_prompt="x" if has_system else "")
    with _tokenizers_lock:
        rendered = tokenizer[1](messages=sample.messages()).prompt
    overhead = max(0, len(rendered.encode("utf-8")) - (2 if has_system else 1))
    _template_overheads[key] = overhead
    return overhead


def _tokenizer(path: Path) -> tuple[Any, Any] | None:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    with _tokenizers_lock:
        if path not in _tokenizers:
            llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                return None
            formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llama.detokenize([llama.token_eos()], special=True).decode(),
                bos_token=llama.detokenize([llama.token_bos()], special=True).decode(),
            )
            _tokenizers[path] = (llama, formatter)
        return _tokenizers[path]


@atexit.register
def _close_models() -> None:
    # llama-cpp-python frees native memory in __del__, which fails with a
    # TypeError when it runs during interpreter shutdown; close explicitly first.
    global _loaded
    with _tokenizers_lock:
        for llama, _formatter in _tokenizers.values():
            llama.close()
        _tokenizers.clear()
    if _loaded is not None:
        _loaded[1].close()
        _loaded = None


def _to_generation(result: Any, latency_ms: int, seed: int) -> Generation:
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    return Generation(
        text=choice["message"].get("content") or "",
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        latency_ms=latency_ms,
        finish_reason=choice.get("finish_reason") or "",
        request_id=str(result.get("id", "")),
        seed=seed,
    )
