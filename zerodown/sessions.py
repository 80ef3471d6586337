"""Server-side sessions that survive rotation, concurrency and store outages.

ASGI (Starlette, FastAPI):  app = SessionMiddleware(app, store=RedisStore(redis_url))
WSGI:                       app = WSGISessionMiddleware(app, store=RedisStore(redis_url))
Flask:                      init_flask(app, store=RedisStore(redis_url))

The signing secrets come from ``ZERODOWN_SESSION_SECRETS`` (comma-separated; the first
signs, all verify) unless given. A store of your own implements :class:`SessionStore`,
carrying out the :data:`SavePlan` a save makes. See ``docs/sessions.md``.
"""

from ._deprecated import moved
from ._errors import SessionError, SessionTooLarge, StoreUnavailable
from ._sessions.asgi import SessionMiddleware
from ._sessions.contract import Delete, Move, NoWrite, Save, SaveOutcome, SavePlan, SessionStore
from ._sessions.policy import DEFAULT_MAX_AGE, OutagePolicy, SessionConfig
from ._sessions.session import DEFAULT_MAX_SESSION_SIZE, ENVIRON_KEY, Session, Signer
from ._sessions.stores import MemoryStore, RedisStore
from ._sessions.wsgi import WSGISessionMiddleware, init_flask

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SESSION_SIZE",
    "ENVIRON_KEY",
    "Delete",
    "MemoryStore",
    "Move",
    "NoWrite",
    "OutagePolicy",
    "RedisStore",
    "Save",
    "SaveOutcome",
    "SavePlan",
    "Session",
    "SessionConfig",
    "SessionError",
    "SessionMiddleware",
    "SessionStore",
    "SessionTooLarge",
    "Signer",
    "StoreUnavailable",
    "WSGISessionMiddleware",
    "init_flask",
]

__getattr__ = moved(
    __name__, {"DEFAULT_MAX_SIZE": ("DEFAULT_MAX_SESSION_SIZE", DEFAULT_MAX_SESSION_SIZE)}
)
