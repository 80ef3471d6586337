"""What the example apps share: the release name and the ``/slow`` parameter."""

from __future__ import annotations

import os

RELEASE = os.environ.get("ZERODOWN_RELEASE", "dev")
MAX_SLEEP_MS = 60_000


def sleep_ms(raw: str | None, default: int = 100) -> int:
    """The ``ms`` query parameter, checked; ValueError says what is wrong."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"ms={raw!r} is not a whole number of milliseconds") from None
    if not 0 <= value <= MAX_SLEEP_MS:
        raise ValueError(f"ms must be between 0 and {MAX_SLEEP_MS}, got {value}")
    return value
