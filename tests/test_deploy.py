"""Production settings pass Django's deploy checks, and misconfiguration is reported at start-up."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

PRODUCTION = {
    "DEBUG": "0",
    "HTTPS_ONLY": "1",
    "ALLOWED_HOSTS": "evals.example.com",
    "HF_TOKEN": "hf_example",
    "RESEND_API_KEY": "re_example",
    "EMAIL_FROM": "Evals <evals@example.com>",
}


def run_check(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        "LLMEVAL_ENV_FILE": "",
        "LLMEVAL_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "llmeval.settings",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-m", "llmeval", "check", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_deploy_check_passes_with_production_settings(tmp_path):
    result = run_check(
        tmp_path,
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(50),
        **PRODUCTION,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secret_key_required_without_debug(tmp_path):
    result = run_check(tmp_path, **PRODUCTION)

    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_missing_gguf_file_is_an_error(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text("[models.mine]\nprovider = 'llamacpp'\npath = 'missing.gguf'\n")

    result = run_check(tmp_path, SECRET_KEY="x", LLMEVAL_MODELS_FILE=str(models))

    assert result.returncode != 0
    assert "llmeval.E002" in result.stderr
    assert "missing.gguf does not exist" in result.stderr


def test_invalid_models_file_is_an_error(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text("[models\n")

    result = run_check(tmp_path, SECRET_KEY="x", LLMEVAL_MODELS_FILE=str(models))

    assert result.returncode != 0
    assert "llmeval.E001" in result.stderr


@pytest.mark.parametrize(
    ("provider", "check_id"), [("resend", "llmeval.E003"), ("smtp", "llmeval.E004")]
)
def test_email_provider_without_credentials(tmp_path, provider, check_id):
    result = run_check(tmp_path, SECRET_KEY="x", EMAIL_PROVIDER=provider)

    assert result.returncode != 0
    assert check_id in result.stderr


def test_hugging_face_model_without_token_warns(tmp_path):
    result = run_check(tmp_path, SECRET_KEY="x")

    assert "llmeval.W001" in result.stdout + result.stderr
