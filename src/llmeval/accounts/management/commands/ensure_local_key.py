"""``llmeval ensure_local_key``: give a local install one API key, created on first start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from llmeval.accounts.models import ApiKey

LOCAL_USERNAME = "local"


class Command(BaseCommand):
    help = "Create the 'local' user and an API key on first start, and write the key to a file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", required=True, help="Where to keep the key (mode 0600).")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if path.exists() and self._still_usable(path):
            return

        user, _ = get_user_model().objects.get_or_create(username=LOCAL_USERNAME)
        _, key = ApiKey.issue(user, name="local (created by llmeval run)")
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(key + "\n")

        self.stdout.write(
            f"Created an API key for user '{LOCAL_USERNAME}'. It is shown once here and kept "
            f"in {path}:\n\n    {key}\n\nSend it as 'Authorization: Bearer <key>'."
        )

    def _still_usable(self, path: Path) -> bool:
        from llmeval.accounts.models import hash_key

        key = path.read_text(encoding="utf-8").strip()
        return ApiKey.objects.usable().filter(key_hash=hash_key(key)).exists()
