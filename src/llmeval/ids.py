"""Primary keys: UUIDv7, unguessable and ordered by creation time."""

from __future__ import annotations

import uuid

import uuid_utils.compat


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7 (48-bit millisecond timestamp, then 74 random bits)."""
    value: uuid.UUID = uuid_utils.compat.uuid7()
    return value
