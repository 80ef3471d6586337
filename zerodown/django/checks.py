"""Django system checks (``manage.py check``, tag ``zerodown``) for what loses sessions or
requests in a rotation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .._errors import ConfigurationError
from .._lifecycle import Lifecycle
from .conf import lifecycle_settings

#: Cache backends whose data lives in one process.
PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache",)
CACHE_ENGINES = (
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.cached_db",
)
FILE_ENGINE = "django.contrib.sessions.backends.file"


def register() -> None:
    checks.register(sessions_in_one_process, "zerodown")
    checks.register(shutdown_budget, "zerodown")
    checks.register(zerodown_sessions, "zerodown")


def sessions_in_one_process(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Sessions kept where only one instance sees them."""
    engine = settings.SESSION_ENGINE
    if engine in CACHE_ENGINES:
        alias = settings.SESSION_CACHE_ALIAS
        backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
        if backend in PER_PROCESS_CACHES:
            lost = (
                "a user's session exists only in the instance that created it: every other "
                "instance sends them back to the login page, and a deploy logs everyone out"
                if engine.endswith(".cache")
                else "each instance caches sessions in its own memory: a logout on one "
                "instance leaves the session alive in the others' caches"
            )
            return [
                checks.Warning(
                    f"SESSION_ENGINE {engine} keeps sessions in cache {alias!r}, a "
                    f"{backend.rpartition('.')[2]}: {lost}",
                    hint="use a shared cache (django.core.cache.backends.redis.RedisCache) "
                    "for sessions, or SESSION_ENGINE = 'django.contrib.sessions.backends.db'",
                    id="zerodown.W001",
                )
            ]
    if engine == FILE_ENGINE:
        return [
            checks.Warning(
                f"SESSION_ENGINE {engine} keeps sessions in files on each instance's disk "
                f"({settings.SESSION_FILE_PATH or 'the temp dir'}): a user who reaches another "
                "instance, or a new pod after a deploy, is logged out",
                hint="use the db or a shared cache engine; a file path shared by every "
                "instance (NFS) works but is rarely what runs in containers",
                id="zerodown.W002",
            )
        ]
    return []


def shutdown_budget(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """zerodown's settings (``ZERODOWN_*``) are valid, and the shutdown sequence fits the
    grace period, as zerodown checks at start-up."""
    try:
        lifecycle = Lifecycle(settings=lifecycle_settings())
    except ConfigurationError as error:
        return [checks.Error(str(error), id="zerodown.E001")]
    return [checks.Warning(problem, id="zerodown.W003") for problem in lifecycle.budget_problems()]


ENGINE = "zerodown.django.sessions"
DJANGO_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"


def zerodown_sessions(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """zerodown's session engine is configured, and has its middleware."""
    if settings.SESSION_ENGINE != ENGINE:
        return []
    from .sessions import engine

    try:
        engine()
    except ConfigurationError as error:
        return [checks.Error(str(error), id="zerodown.E002")]
    if DJANGO_MIDDLEWARE in settings.MIDDLEWARE:
        return [
            checks.Warning(
                f"MIDDLEWARE has Django's {DJANGO_MIDDLEWARE} with zerodown's session engine: "
                "a session store that does not answer becomes a 500 instead of a 503 with "
                "Retry-After, and zerodown rehearse cannot see whether sessions survive",
                hint=f"put {ENGINE}.SessionMiddleware in its place",
                id="zerodown.W004",
            )
        ]
    return []
