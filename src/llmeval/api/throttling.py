"""Per-key request limits, counted in the shared cache (Redis) so every API process agrees."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from llmeval.accounts.models import ApiKey

logger = logging.getLogger(__name__)


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Count requests per API key; anonymous requests are counted per client address.

    When the cache (Redis) is unreachable the request is let through: a stored
    evaluation matters more than an exact limit during an outage.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:
            logger.warning(
                "throttle.cache_unavailable scope=%s error=%s", self.scope, type(exc).__name__
            )
            return True

    def get_rate(self) -> str | None:
        # Read the rate on each request, not once at import, so changed settings apply.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: APIView) -> str:
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SubmitRateThrottle(ApiKeyRateThrottle):
    scope = "submit"


class ReadRateThrottle(ApiKeyRateThrottle):
    scope = "read"


class EmailRateThrottle(ApiKeyRateThrottle):
    """Submissions that ask for an email, checked only when a recipient is given."""

    scope = "email"


def throttles_for(method: str) -> list[Any]:
    if method == "POST":
        return [SubmitRateThrottle()]
    return [ReadRateThrottle()]
