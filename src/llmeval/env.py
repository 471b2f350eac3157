"""Typed access to configuration in environment variables.

Every setting is read through ``Env``, which rejects malformed values at start-up
with a message naming the variable. A variable may have older aliases, and any
variable may instead be given as ``NAME_FILE`` holding a path to a file with the
value (the convention Docker and Kubernetes secrets use).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dotenv import dotenv_values

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ImproperlyConfiguredEnv(ValueError):
    """A configuration variable has a value that cannot be used."""


class Env:
    """Read typed values from a mapping of environment variables."""

    def __init__(self, environ: Mapping[str, builtins.str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    @classmethod
    def with_dotenv(cls, path: Path) -> Env:
        """Build an ``Env`` where the process environment wins over a ``.env`` file."""
        merged: dict[str, builtins.str] = {}
        if path.is_file():
            merged.update({key: value for key, value in dotenv_values(path).items() if value})
        merged.update(os.environ)
        return cls(merged)

    def raw(
        self, name: builtins.str, aliases: Sequence[builtins.str] = ()
    ) -> tuple[str, builtins.str] | None:
        """Return ``(variable, value)`` for the first of ``name`` and its aliases that is set."""
        for candidate in (name, *aliases):
            value = self._environ.get(candidate)
            if value is not None and value != "":
                return candidate, value

            file_path = self._environ.get(f"{candidate}_FILE")
            if file_path:
                return f"{candidate}_FILE", _read_secret_file(candidate, file_path)
        return None

    def is_set(self, name: builtins.str, aliases: Sequence[builtins.str] = ()) -> builtins.bool:
        return self.raw(name, aliases) is not None

    def str(
        self, name: builtins.str, default: builtins.str = "", aliases: Sequence[builtins.str] = ()
    ) -> builtins.str:
        found = self.raw(name, aliases)
        return default if found is None else found[1]

    def optional_str(
        self, name: builtins.str, aliases: Sequence[builtins.str] = ()
    ) -> builtins.str | None:
        found = self.raw(name, aliases)
        return None if found is None else found[1]

    def bool(
        self,
        name: builtins.str,
        default: builtins.bool = False,
        aliases: Sequence[builtins.str] = (),
    ) -> builtins.bool:
        found = self.raw(name, aliases)
        if found is None:
            return default

        variable, value = found
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfiguredEnv(
            f"{variable}={value!r} is not a boolean: use one of 1, 0, true, false, yes, no."
        )

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int | None = None,
        maximum: builtins.int | None = None,
        aliases: Sequence[builtins.str] = (),
    ) -> builtins.int:
        found = self.raw(name, aliases)
        if found is None:
            return default

        variable, value = found
        try:
            number = int(value.strip())
        except ValueError:
            raise ImproperlyConfiguredEnv(f"{variable}={value!r} is not an integer.") from None
        _check_range(variable, number, minimum, maximum)
        return number

    def float(
        self,
        name: builtins.str,
        default: builtins.float,
        *,
        minimum: builtins.float | None = None,
        maximum: builtins.float | None = None,
    ) -> builtins.float:
        found = self.raw(name)
        if found is None:
            return default

        variable, value = found
        try:
            number = float(value.strip())
        except ValueError:
            raise ImproperlyConfiguredEnv(f"{variable}={value!r} is not a number.") from None
        _check_range(variable, number, minimum, maximum)
        return number

    def list(
        self,
        name: builtins.str,
        default: Sequence[builtins.str] = (),
        aliases: Sequence[builtins.str] = (),
    ) -> builtins.list[builtins.str]:
        """Read a comma-separated list, dropping empty items and surrounding spaces."""
        found = self.raw(name, aliases)
        if found is None:
            return list(default)
        return [item.strip() for item in found[1].split(",") if item.strip()]

    def choice(
        self, name: builtins.str, default: builtins.str, choices: Sequence[builtins.str]
    ) -> builtins.str:
        value = self.str(name, default)
        if value not in choices:
            allowed = ", ".join(choices)
            raise ImproperlyConfiguredEnv(f"{name}={value!r} is invalid: use one of {allowed}.")
        return value


def load_env() -> Env:
    """Return the ``Env`` of this process: the environment over the ``.env`` file.

    ``LLMEVAL_ENV_FILE`` names the file (default ``.env`` in the working
    directory); set it empty to read no file.
    """
    env_file = os.environ.get("LLMEVAL_ENV_FILE", ".env")
    return Env.with_dotenv(Path(env_file)) if env_file else Env()


def _read_secret_file(name: str, file_path: str) -> str:
    try:
        return Path(file_path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ImproperlyConfiguredEnv(
            f"{name}_FILE points to {file_path!r}, which cannot be read: {exc.strerror}."
        ) from None


def _check_range(
    variable: str,
    number: float,
    minimum: float | None,
    maximum: float | None,
) -> None:
    if minimum is not None and number < minimum:
        raise ImproperlyConfiguredEnv(f"{variable}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfiguredEnv(f"{variable}={number} is above the maximum of {maximum}.")
