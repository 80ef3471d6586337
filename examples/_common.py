"""What the example apps share: the release name, the checks and the ``/slow`` parameter."""

from __future__ import annotations

import os

import zerodown
from zerodown.health import postgres, redis

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


def register_checks(health: zerodown.Health) -> None:
    """Readiness checks for the dependencies the environment names.

    ``DATABASE_URL`` (a PostgreSQL DSN; needs ``zerodown[postgres]``) and ``REDIS_URL``
    (needs ``zerodown[redis]``). An app with an asyncpg pool passes the pool instead of
    the DSN, so that the check uses the app's connections.
    """
    if database_url := os.environ.get("DATABASE_URL"):
        health.add(postgres(database_url))
    if redis_url := os.environ.get("REDIS_URL"):
        health.add(redis(redis_url))
