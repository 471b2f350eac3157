"""DRF authentication by ``Authorization: Bearer <API key>``."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from llmeval.accounts.models import ApiKey, hash_key

# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


# Keys seen in the last AUTH_CACHE_SECONDS, per process, so most requests skip the
# database lookup. Expiry is checked on every request; a revocation or a
# deactivated user takes effect in other processes within that many seconds.
_seen: dict[str, tuple[float, ApiKey]] = {}
_seen_lock = threading.Lock()
MAX_REMEMBERED_KEYS = 10_000


def _recently_seen(digest: str) -> ApiKey | None:
    ttl = settings.AUTH_CACHE_SECONDS
    if ttl <= 0:
        return None
    with _seen_lock:
        entry = _seen.get(digest)
    if entry is None or time.monotonic() - entry[0] > ttl:
        return None
    return entry[1]


def _remember(digest: str, api_key: ApiKey) -> None:
    if settings.AUTH_CACHE_SECONDS <= 0:
        return
    with _seen_lock:
        if len(_seen) >= MAX_REMEMBERED_KEYS:
            _seen.clear()
        _seen[digest] = (time.monotonic(), api_key)


def forget_keys() -> None:
    """Drop this process's remembered keys (after a revocation, say)."""
    with _seen_lock:
        _seen.clear()


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: use 'Bearer <API key>'."
            )
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected exactly one key after 'Bearer'."
            )

        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        return self._authenticate_key(key)

    def _authenticate_key(self, key: str) -> tuple[Any, ApiKey]:
        digest = hash_key(key)
        api_key = _recently_seen(digest)
        if api_key is None:
            api_key = (
                ApiKey.objects.usable()
                .select_related("user")
                .filter(key_hash=digest, user__is_active=True)
                .first()
            )
            if api_key is None:
                raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
            _remember(digest, api_key)
        if not api_key.is_usable:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")

        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
