"""Django settings, read from the environment (and a ``.env`` file in the working directory)."""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext

from llmeval import config
from llmeval.celery_config import celery_settings
from llmeval.env import load_env

# Lets classes such as ModelAdmin[ApiKey] be subscripted at run time, as the type stubs allow.
django_stubs_ext.monkeypatch()

PACKAGE_DIR = Path(__file__).resolve().parent
env = load_env()

VAR_DIR = Path(env.str("LLMEVAL_VAR_DIR", str(Path.cwd() / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = config.secret_key(env, VAR_DIR, debug=DEBUG)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# Security headers. Behind HTTPS (HTTPS_ONLY=true) cookies are secure, plain HTTP
# is redirected and HSTS is sent; a local install on http://127.0.0.1 leaves it off.
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if HTTPS_ONLY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^api/health/?$"]
    SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "anymail",
    "llmeval.accounts",
    "llmeval.evaluations",
    "llmeval.notifications",
    "llmeval.api",
]

MIDDLEWARE = [
    "llmeval.api.middleware.ApiBodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "llmeval.urls"
WSGI_APPLICATION = "llmeval.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": config.database_settings(env)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# WhiteNoise serves admin and Swagger UI files from the installed apps, so no
# collectstatic step is needed.
WHITENOISE_USE_FINDERS = True

# Request limits. The API answers 413 above the body limit and 400 above the prompt limit.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", 262_144, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
MAX_PROMPT_CHARS = env.int("MAX_PROMPT_CHARS", 32_000, minimum=1)
MAX_NEW_TOKENS_LIMIT = env.int("MAX_NEW_TOKENS_LIMIT", 4096, minimum=1)
DEFAULT_MAX_NEW_TOKENS = env.int("DEFAULT_MAX_NEW_TOKENS", 256, minimum=1)
DEFAULT_TEMPERATURE = env.float("DEFAULT_TEMPERATURE", 0.7, minimum=0.0, maximum=2.0)
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# Anonymous use is for a local single-user install only: every request without a
# key then shares one space of evaluations.
ALLOW_ANONYMOUS_ACCESS = env.bool("ALLOW_ANONYMOUS_ACCESS", default=False)
# Seconds an API process reuses a key it has looked up; a revocation reaches the
# other processes within this time. 0 looks the key up on every request.
AUTH_CACHE_SECONDS = env.int("AUTH_CACHE_SECONDS", 30, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["llmeval.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["llmeval.accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "llmeval.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "submit": env.str("THROTTLE_SUBMIT_RATE", "120/min"),
        "read": env.str("THROTTLE_READ_RATE", "1200/min"),
        "email": env.str("THROTTLE_EMAIL_RATE", "500/day"),
    },
}
# An empty list allows every domain.
RECIPIENT_DOMAINS = [domain.lower() for domain in env.list("RECIPIENT_DOMAINS")]

SPECTACULAR_SETTINGS = {
    "TITLE": "llmeval API",
    "DESCRIPTION": "Submit prompts to language models, and read the answers and their scores.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api",
}
# Routes the bare comparison view of bench/bench_submit.py; never on in production.
BENCH_BARE_VIEW = env.bool("LLMEVAL_BENCH_BARE_VIEW", default=False)
API_PAGE_SIZE = env.int("API_PAGE_SIZE", 50, minimum=1, maximum=200)

# Models are registered by name in a TOML file; the packaged file is the default.
MODELS_FILE = Path(env.str("LLMEVAL_MODELS_FILE", str(PACKAGE_DIR / "models.toml")))
DEFAULT_MODEL = env.optional_str("DEFAULT_MODEL")
HF_TOKEN = env.optional_str("HF_TOKEN", aliases=("HUGGING_SPACE_API", "HUGGING_FACE_HUB_TOKEN"))
HF_ROUTER_URL = env.str("HF_ROUTER_URL", "https://router.huggingface.co/v1").rstrip("/")
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", 120.0, minimum=1.0)
REMOTE_HTTP_MAX_CONNECTIONS = env.int("REMOTE_HTTP_MAX_CONNECTIONS", 512, minimum=1)
LOCAL_MODEL_THREADS = env.int("LOCAL_MODEL_THREADS", 0, minimum=0)

# Workers.
GENERATION_MAX_ATTEMPTS = env.int("GENERATION_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
GENERATION_TIME_LIMIT_SECONDS = env.int("GENERATION_TIME_LIMIT_SECONDS", 600, minimum=10)
SWEEPER_INTERVAL_SECONDS = env.int("SWEEPER_INTERVAL_SECONDS", 60, minimum=1)
PENDING_GRACE_SECONDS = env.int("PENDING_GRACE_SECONDS", 300, minimum=1)

_broker_url = config.broker_url(env)
CACHES = config.cache_settings(env, _broker_url)
globals().update(
    celery_settings(
        broker_url=_broker_url,
        transport_options=config.broker_transport_options(_broker_url, VAR_DIR),
        time_limit=GENERATION_TIME_LIMIT_SECONDS,
        sweeper_interval=SWEEPER_INTERVAL_SECONDS,
    )
)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", 5, minimum=1, maximum=20)
# Resend's default limit is 2 requests per second per team; the limit applies across all workers.
EMAIL_RATE_LIMIT_PER_SECOND = env.int("EMAIL_RATE_LIMIT_PER_SECOND", 2, minimum=1)
# Emails per request to a provider with a batch endpoint (Resend accepts up to 100).
# Other backends send one email per request whatever the value.
EMAIL_BATCH_SIZE = env.int("EMAIL_BATCH_SIZE", 100, minimum=1, maximum=100)

# Email.
_email = config.email_settings(env, VAR_DIR)
EMAIL_PROVIDER: str = _email.pop("EMAIL_PROVIDER")
EMAIL_URL_SET = env.is_set("EMAIL_URL")
globals().update(_email)
DEFAULT_FROM_EMAIL = env.str("EMAIL_FROM", "LLM Eval <evaluations@localhost>")

LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
    },
}
