"""Server-side sessions that survive rotation, concurrency and store outages.

ASGI (Starlette, FastAPI):  app = SessionMiddleware(app, store=RedisStore(redis_url))
WSGI:                       app = WSGISessionMiddleware(app, store=RedisStore(redis_url))
Flask:                      init_flask(app, store=RedisStore(redis_url))

The signing secrets come from ``ZERODOWN_SESSION_SECRETS`` (comma-separated; the first
signs, all verify) unless given. See ``docs/sessions.md``.
"""

from ._sessions.asgi import SessionMiddleware
from ._sessions.policy import DEFAULT_MAX_AGE, OutagePolicy, SavePlan, SessionConfig
from ._sessions.session import DEFAULT_MAX_SIZE, Session, SessionTooLarge, Signer
from ._sessions.stores import MemoryStore, RedisStore, SessionStore, StoreUnavailable
from ._sessions.wsgi import ENVIRON_KEY, WSGISessionMiddleware, init_flask

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SIZE",
    "ENVIRON_KEY",
    "MemoryStore",
    "OutagePolicy",
    "RedisStore",
    "SavePlan",
    "Session",
    "SessionConfig",
    "SessionMiddleware",
    "SessionStore",
    "SessionTooLarge",
    "Signer",
    "StoreUnavailable",
    "WSGISessionMiddleware",
    "init_flask",
]
