"""Server-side sessions that survive rotation, concurrency and store outages.

app = SessionMiddleware(app, store=RedisStore(os.environ["REDIS_URL"]))

The secrets come from ``ZERODOWN_SESSION_SECRETS`` (comma-separated; the first signs, all
verify) unless given. See ``docs/sessions.md``.
"""

from ._session import (
    DEFAULT_MAX_SIZE,
    Session,
    SessionTooLarge,
    Signer,
)
from ._session_asgi import DEFAULT_MAX_AGE, OutagePolicy, SessionMiddleware
from ._session_store import MemoryStore, RedisStore, SessionStore, StoreUnavailable

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SIZE",
    "MemoryStore",
    "OutagePolicy",
    "RedisStore",
    "Session",
    "SessionMiddleware",
    "SessionStore",
    "SessionTooLarge",
    "Signer",
    "StoreUnavailable",
]
