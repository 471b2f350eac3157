"""Settings for the test session: the production settings with test services and folders.

The values are set in the environment before ``llmeval.settings`` reads it, so
the worker processes that the tests start read the same configuration.
"""

import os
import tempfile

_session_dir = os.environ.setdefault("LLMEVAL_TEST_DIR", tempfile.mkdtemp(prefix="llmeval-test-"))

os.environ["LLMEVAL_ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("THROTTLE_SUBMIT_RATE", "100000/min")
os.environ.setdefault("AUTH_CACHE_SECONDS", "0")
os.environ.setdefault("THROTTLE_READ_RATE", "100000/min")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ["LLMEVAL_VAR_DIR"] = _session_dir
os.environ["EMAIL_OUTBOX_DIR"] = os.path.join(_session_dir, "outbox")
os.environ.setdefault("HF_TOKEN", "hf_test_token")
for _name in ("RESEND_API_KEY", "RESEND_API", "EMAIL_URL", "DEFAULT_MODEL"):
    os.environ.pop(_name, None)

from llmeval.settings import *  # noqa: E402, F403
