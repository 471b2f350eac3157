"""Text clean-up before a database write."""

from __future__ import annotations


def storable_text(text: str) -> str:
    """Remove NUL characters and replace lone surrogates, which PostgreSQL cannot store."""
    cleaned = text.replace("\x00", "")
    return cleaned.encode("utf-8", errors="replace").decode("utf-8")


def excerpt(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` characters, marking a cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"
