"""Django system checks (``manage.py check``, tag ``zerodown``) for what loses sessions or
requests in a rotation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .._errors import ConfigurationError
from .._lifecycle import Lifecycle
from .._settings import Settings

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
        lifecycle = Lifecycle(settings=Settings.load())
    except ConfigurationError as error:
        return [checks.Error(str(error), id="zerodown.E001")]
    return [checks.Warning(problem, id="zerodown.W003") for problem in lifecycle.budget_problems()]
