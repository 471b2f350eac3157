"""``llmeval apikey``: create, list and revoke API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from llmeval.accounts.models import ApiKey


class Command(BaseCommand):
    help = "Create, list or revoke API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)

        create = actions.add_parser("create", help="Create a key and print it once.")
        create.add_argument("--user", required=True, help="Username; created when missing.")
        create.add_argument("--name", default="", help="A label to tell keys apart.")
        create.add_argument(
            "--expires-in-days", type=int, default=None, help="Days until the key expires."
        )

        listing = actions.add_parser("list", help="List keys (prefixes only).")
        listing.add_argument("--user", default=None, help="Only this user's keys.")

        revoke = actions.add_parser("revoke", help="Revoke a key by its prefix.")
        revoke.add_argument("prefix", help="The key prefix shown by 'list', such as llme_1a2b3c4d.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            self._create(options["user"], options["name"], options["expires_in_days"])
        elif action == "list":
            self._list(options["user"])
        else:
            self._revoke(options["prefix"])

    def _create(self, username: str, name: str, expires_in_days: int | None) -> None:
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        user, _ = get_user_model().objects.get_or_create(username=username)
        expires_at = None
        if expires_in_days is not None:
            expires_at = timezone.now() + timedelta(days=expires_in_days)

        api_key, key = ApiKey.issue(user, name=name, expires_at=expires_at)
        self.stderr.write(f"Created key {api_key.prefix} for {username}. It is shown only once:")
        self.stdout.write(key)

    def _list(self, username: str | None) -> None:
        keys = ApiKey.objects.select_related("user").order_by("user__username", "-created_at")
        if username:
            keys = keys.filter(user__username=username)
        for api_key in keys:
            state = "usable" if api_key.is_usable else "revoked or expired"
            expires = api_key.expires_at.isoformat() if api_key.expires_at else "never"
            self.stdout.write(
                f"{api_key.prefix}  {api_key.user.get_username()}  {api_key.name or '-'}  "
                f"expires {expires}  {state}"
            )

    def _revoke(self, prefix: str) -> None:
        api_key = ApiKey.objects.filter(prefix=prefix).first()
        if api_key is None:
            raise CommandError(
                f"No API key with prefix {prefix!r}; 'llmeval apikey list' shows them."
            )
        api_key.revoke()
        self.stdout.write(f"Revoked {prefix}.")
