"""Turn environment variables into the database, broker and email settings.

Standard names come first (``DATABASE_URL``, ``REDIS_URL``, ``RESEND_API_KEY``);
the names of the original deployment are accepted as aliases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import dj_database_url
import dj_email_url

from llmeval.env import Env, ImproperlyConfiguredEnv

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/llmeval"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def database_url(env: Env) -> str:
    """Return the database URL from ``DATABASE_URL`` or the older ``DATABASE_*`` variables."""
    url = env.optional_str("DATABASE_URL")
    if url:
        return url

    name = env.optional_str("DATABASE_NAME")
    if not name:
        return DEFAULT_DATABASE_URL

    user = quote(env.str("DATABASE_USER", "postgres"), safe="")
    password = env.optional_str("DATABASE_PASS", aliases=("DATABASE_PASSWORD",))
    host = env.str("DATABASE_HOST", "127.0.0.1", aliases=("HOST",))
    port = env.int("DATABASE_PORT", 5432, minimum=1, maximum=65535)
    credentials = user if password is None else f"{user}:{quote(password, safe='')}"
    return f"postgres://{credentials}@{host}:{port}/{quote(name, safe='')}"


def database_settings(env: Env) -> dict[str, Any]:
    url = database_url(env)
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    engine = config.get("ENGINE", "")

    if engine.endswith("sqlite3"):
        # Several processes (API, workers, beat) share the file: WAL lets readers
        # run beside one writer, and IMMEDIATE transactions take the write lock at
        # BEGIN so two writers wait on each other instead of failing to upgrade.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        return config

    if "postgresql" not in engine:
        raise ImproperlyConfiguredEnv(
            f"DATABASE_URL uses the unsupported engine {engine!r}: use postgres:// or sqlite://."
        )

    config.setdefault("OPTIONS", {})
    config["OPTIONS"]["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    pool_size = env.int("DATABASE_POOL_SIZE", 0, minimum=0)
    if pool_size:
        # Django's psycopg pool: closing a connection returns it to the pool, so a
        # worker that lets go of its connection during each model call stays cheap.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"]["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 10}
    else:
        config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
        config["CONN_HEALTH_CHECKS"] = True
    config["TEST"] = {"NAME": env.optional_str("DATABASE_TEST_NAME")}
    return config


def secret_key(env: Env, var_dir: Path, *, debug: bool) -> str:
    """Return SECRET_KEY, or the key ``llmeval run`` keeps in ``var/secret-key``.

    Outside DEBUG a missing key is an error: Django signs sessions and the
    admin's tokens with it.
    """
    key = env.optional_str("SECRET_KEY", aliases=("DJANGO_SECRET_KEY",))
    if key:
        return key

    local_file = var_dir / "secret-key"
    if local_file.is_file():
        return local_file.read_text(encoding="utf-8").strip()
    if debug:
        return "insecure-development-key-only-used-with-DEBUG"
    raise ImproperlyConfiguredEnv(
        "SECRET_KEY is required when DEBUG is off: set SECRET_KEY or SECRET_KEY_FILE "
        f"(llmeval run creates {local_file} for a local install)."
    )


def cache_settings(env: Env, broker: str) -> dict[str, Any]:
    """Use Redis for the cache that rate limits share, or a per-process cache without it."""
    url = env.optional_str("CACHE_URL")
    if url is None and broker.startswith(("redis://", "rediss://")):
        url = broker
    if url:
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": "llmeval",
            }
        }
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def broker_url(env: Env) -> str:
    return env.str("CELERY_BROKER_URL", aliases=("REDIS_URL",), default=DEFAULT_REDIS_URL)


def broker_transport_options(url: str, var_dir: Path) -> dict[str, Any]:
    if url.startswith("filesystem://"):
        folder = var_dir / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # kombu puts its control exchange in ./control unless control_folder is set.
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    return {}


def email_settings(env: Env, var_dir: Path) -> dict[str, Any]:
    """Build Django's ``MAILERS``: Resend with a key, SMTP with ``EMAIL_URL``, else files.

    ``EMAIL_PROVIDER`` (resend, smtp or file) forces a choice; the system checks
    then report a missing key or URL at start-up.
    """
    provider = env.choice("EMAIL_PROVIDER", "auto", ["auto", "resend", "smtp", "file"])
    resend_key = env.optional_str("RESEND_API_KEY", aliases=("RESEND_API",))
    email_url = env.optional_str("EMAIL_URL")
    if provider == "auto" and resend_key:
        provider = "resend"
    elif provider == "auto" and email_url:
        provider = "smtp"
    elif provider == "auto":
        provider = "file"

    if provider == "resend":
        options: dict[str, Any] = {"api_key": resend_key or ""}
        api_url = env.optional_str("RESEND_API_URL")
        if api_url:
            options["api_url"] = api_url
        return _mailer("resend", "llmeval.notifications.backends.ResendEmailBackend", options)

    if provider == "smtp":
        parsed = dj_email_url.parse(email_url or "smtp://localhost:25")
        smtp_options = {
            "host": parsed["EMAIL_HOST"],
            "port": parsed["EMAIL_PORT"],
            "username": parsed["EMAIL_HOST_USER"],
            "password": parsed["EMAIL_HOST_PASSWORD"],
            "use_tls": parsed["EMAIL_USE_TLS"],
            "use_ssl": parsed["EMAIL_USE_SSL"],
            "timeout": parsed.get("EMAIL_TIMEOUT") or 30,
        }
        return _mailer("smtp", "django.core.mail.backends.smtp.EmailBackend", smtp_options)

    outbox = Path(env.str("EMAIL_OUTBOX_DIR", str(var_dir / "outbox")))
    return _mailer(
        "file", "django.core.mail.backends.filebased.EmailBackend", {"file_path": str(outbox)}
    )


def _mailer(provider: str, backend: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "EMAIL_PROVIDER": provider,
        "MAILERS": {"default": {"BACKEND": backend, "OPTIONS": options}},
    }
