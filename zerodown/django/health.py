"""Health checks from Django's own connections, off the request thread.

Each runs in the health runner's thread, bounded by the check's timeout, and closes the
connection it opened, so a check never holds one of the database's connections between
runs. They work on any backend Django has (SQLite, PostgreSQL, MySQL, Oracle).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Unpack

from django.conf import settings
from django.core.cache import caches as django_caches
from django.db import connections

from .._health.model import STARTUP, Check, CheckOptions
from .._health.registry import Health, get_health

#: Unapplied migrations named in a failing check's output; the rest are counted.
SHOWN_MIGRATIONS = 5
_CACHE_KEY = "zerodown:health"


def databases(aliases: Iterable[str] | None = None, **options: Unpack[CheckOptions]) -> list[Check]:
    """One check per database alias (every configured one of ``DATABASES`` by default): a
    connection is made and found usable (the backend's own ping)."""
    options.setdefault("component_type", "datastore")
    return [
        Check(f"database:{alias}", _database(alias), **options)
        for alias in (aliases if aliases is not None else _configured_databases())
    ]


def caches(aliases: Iterable[str] | None = None, **options: Unpack[CheckOptions]) -> list[Check]:
    """One check per cache alias (``CACHES``, the dummy cache left out): a value written
    is read back."""
    options.setdefault("component_type", "datastore")
    configured = settings.CACHES
    chosen = aliases if aliases is not None else configured
    return [
        Check(f"cache:{alias}", _cache(alias), **options)
        for alias in chosen
        if not configured.get(alias, {}).get("BACKEND", "").endswith("DummyCache")
    ]


def migrations_applied(alias: str = "default", **options: Unpack[CheckOptions]) -> Check:
    """Every migration of every app is applied on ``alias``: the migration executor's plan
    to the graph's leaves is empty. In the ``startup`` group unless told otherwise: a new
    release does not turn ready before its migrations ran, while the running one is not
    taken out when the next migrates ahead of it."""

    def check() -> dict[str, object]:
        from django.db.migrations.executor import MigrationExecutor

        connection = connections[alias]
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        finally:
            connection.close()
        if not plan:
            return {"observedValue": 0, "observedUnit": "migrations to apply"}
        names = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
        shown = ", ".join(names[:SHOWN_MIGRATIONS])
        more = len(names) - SHOWN_MIGRATIONS
        return {
            "status": "fail",
            "observedValue": len(names),
            "observedUnit": "migrations to apply",
            "output": f"{len(names)} migrations not applied on {alias!r}: {shown}"
            + (f" and {more} more" if more > 0 else "")
            + "; run manage.py migrate",
        }

    options.setdefault("groups", (STARTUP,))
    options.setdefault("component_type", "datastore")
    return Check(f"migrations:{alias}", check, **options)


def register(health: Health | None = None) -> list[Check]:
    """Add every database, every cache and the default database's migrations to
    ``health`` (the process's by default); the checks added."""
    added = [*databases(), *caches()]
    if "default" in _configured_databases():
        added.append(migrations_applied())
    target = health or get_health()
    for check in added:
        target.add(check)
    return added


def _configured_databases() -> list[str]:
    # Django fills an empty DATABASES with a "default" on its dummy backend, which
    # refuses every query: an app without a database has nothing to check.
    return [
        alias
        for alias, database in settings.DATABASES.items()
        if database.get("ENGINE", "") not in ("", "django.db.backends.dummy")
    ]


def _database(alias: str) -> Any:
    def check() -> dict[str, object]:
        connection = connections[alias]
        started = time.monotonic()
        try:
            connection.ensure_connection()
            usable = connection.is_usable()
        finally:
            connection.close()
        milliseconds = round((time.monotonic() - started) * 1000, 2)
        result: dict[str, object] = {"observedValue": milliseconds, "observedUnit": "ms"}
        if not usable:
            result.update(status="fail", output="the connection is not usable")
        return result

    return check


def _cache(alias: str) -> Any:
    def check() -> dict[str, object]:
        cache = django_caches[alias]
        started = time.monotonic()
        token = f"{time.time_ns()}"
        cache.set(_CACHE_KEY, token, timeout=30)
        read = cache.get(_CACHE_KEY)
        milliseconds = round((time.monotonic() - started) * 1000, 2)
        result: dict[str, object] = {"observedValue": milliseconds, "observedUnit": "ms"}
        if read != token:
            result.update(status="fail", output="a value written was not read back")
        return result

    return check
