"""What the example apps share: the release name, the checks, the session options, the
cart and the ``/slow`` parameter."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import zerodown
from zerodown.health import postgres, redis
from zerodown.sessions import RedisStore

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


MAX_CART_ITEMS = 200


def session_options() -> dict[str, Any] | None:
    """The session middleware's options when ``REDIS_URL`` is set, else None.

    The secrets come from ``ZERODOWN_SESSION_SECRETS``; ``SESSION_COOKIE_SECURE=0`` sends
    the cookie over plain http (local runs and the test bed, never production).
    """
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return None
    return {
        "store": RedisStore(redis_url),
        "secure": os.environ.get("SESSION_COOKIE_SECURE", "1") != "0",
    }


def add_to_cart(session: MutableMapping[str, Any], item: str | None) -> list[str]:
    """Add ``item`` to the session's cart; ValueError says what is wrong with it."""
    if not item or len(item) > 100:
        raise ValueError("item must be a name of 1 to 100 characters")
    items = [*session.get("cart", []), item]
    if len(items) > MAX_CART_ITEMS:
        raise ValueError(f"a cart holds at most {MAX_CART_ITEMS} items")
    session["cart"] = items
    return items
