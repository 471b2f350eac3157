"""API keys: a user's bearer credentials, stored hashed."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone

from llmeval.ids import uuid7

KEY_PREFIX = "llme"
PREFIX_CHARS = 8


def hash_key(key: str) -> str:
    """Hash a key for storage and lookup.

    Keys carry 256 random bits, so one SHA-256 is enough: there is nothing to
    guess, and a slow password hash would cost every request.
    """
    return hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    # The first characters of the key, kept in clear so a user can tell keys apart.
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering: ClassVar[list[str]] = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @classmethod
    def issue(
        cls, user: models.Model, name: str = "", expires_at: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key for ``user``; return the row and the key, which is shown only once."""
        prefix = f"{KEY_PREFIX}_{secrets.token_hex(PREFIX_CHARS // 2)}"
        key = f"{prefix}_{secrets.token_urlsafe(32)}"
        api_key = cls.objects.create(
            user=user, name=name, prefix=prefix, key_hash=hash_key(key), expires_at=expires_at
        )
        return api_key, key

    @property
    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

        from llmeval.accounts.authentication import forget_keys

        forget_keys()
