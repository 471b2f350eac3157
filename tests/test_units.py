"""Small pure helpers: the env reader, text clean-up, backoff and Retry-After parsing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmeval.env import Env, ImproperlyConfiguredEnv
from llmeval.providers.huggingface import _retry_after
from llmeval.providers.registry import ModelConfigError, load_registry
from llmeval.tasking import backoff_seconds
from llmeval.text import excerpt, storable_text


def test_env_reads_aliases_in_order():
    env = Env({"HUGGING_SPACE_API": "old", "OTHER": "x"})

    assert env.str("HF_TOKEN", aliases=("HUGGING_SPACE_API",)) == "old"
    assert (
        Env({"HF_TOKEN": "new", "HUGGING_SPACE_API": "old"}).str(
            "HF_TOKEN", aliases=("HUGGING_SPACE_API",)
        )
        == "new"
    )


def test_env_reads_secret_file(tmp_path: Path):
    secret = tmp_path / "key"
    secret.write_text("re_123\n")

    assert Env({"RESEND_API_KEY_FILE": str(secret)}).str("RESEND_API_KEY") == "re_123"


def test_env_rejects_bad_boolean():
    with pytest.raises(ImproperlyConfiguredEnv, match="SETTING='maybe' is not a boolean"):
        Env({"SETTING": "maybe"}).bool("SETTING")


@pytest.mark.parametrize(("value", "message"), [("ten", "is not an integer"), ("0", "below")])
def test_env_rejects_bad_integer(value, message):
    with pytest.raises(ImproperlyConfiguredEnv, match=message):
        Env({"SETTING": value}).int("SETTING", 5, minimum=1)


def test_storable_text_removes_nul_and_surrogates():
    assert storable_text("a\x00b\ud800c") == "ab?c"


def test_excerpt_marks_cut():
    assert excerpt("abcdef", 4) == "abc…"
    assert excerpt("abc", 4) == "abc"


def test_backoff_grows_caps_and_honours_minimum():
    assert 1 <= backoff_seconds(1) <= 2
    assert 4 <= backoff_seconds(3) <= 8
    assert backoff_seconds(30) <= 300
    assert backoff_seconds(1, minimum=12) == 12


def test_retry_after_forms():
    assert _retry_after("7") == 7
    assert _retry_after("-3") == 0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert _retry_after("soon") is None
    assert _retry_after(None) is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[models.x]\nprovider = 'openai'\n", "provider 'openai' is invalid"),
        ("[models.x]\nprovider = 'huggingface'\n", "needs model_id or base_url"),
        ("[models.x]\nprovider = 'llamacpp'\n", "needs path, or package and file"),
        (
            "[models.x]\nprovider = 'llamacpp'\npackage = 'no_such_pkg'\nfile = 'a.gguf'\n",
            "is not installed",
        ),
        (
            "default = 'y'\n[models.x]\nprovider = 'llamacpp'\npath = 'a.gguf'\n",
            "default model 'y' is not registered",
        ),
        ("models = 3\n", "has no [models.<name>] tables"),
        ("[models\n", "not valid TOML"),
    ],
)
def test_models_file_errors(tmp_path: Path, toml, message):
    path = tmp_path / "models.toml"
    path.write_text(toml)

    with pytest.raises(ModelConfigError, match=re.escape(message)):
        load_registry.__wrapped__(path, None)


def test_relative_gguf_path_is_resolved_from_file(tmp_path: Path):
    path = tmp_path / "models.toml"
    path.write_text("[models.x]\nprovider = 'llamacpp'\npath = 'weights/x.gguf'\n")

    registry = load_registry.__wrapped__(path, None)

    assert registry.get("x").path == tmp_path / "weights" / "x.gguf"
    assert registry.default == "x"
