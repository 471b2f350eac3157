"""The ``llmeval`` console script.

``llmeval run`` starts the whole service; every other command is a Django
management command (``llmeval migrate``, ``llmeval createsuperuser``, ...).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    if len(args) > 1 and args[1] == "run":
        from llmeval import launcher

        return launcher.main(args[2:])

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmeval.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(args)
    return 0
