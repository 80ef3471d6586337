"""Migrations that never queue the app behind them: ``lock_timeout``, and retries.

A migration's ``ALTER TABLE`` waits for its lock behind any open transaction, and while it
waits every query on that table waits behind *it*: one slow report stalls the whole app.
With ``lock_timeout`` the migration gives up after a moment instead, and is tried again
after a backoff, as strong_migrations and safe-pg-migrations do.

In Alembic's ``env.py``, instead of ``with context.begin_transaction():
context.run_migrations()``::

    from zerodown.migrations import run_migrations

    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        run_migrations(context)

The timeouts are an argument, else ``ZERODOWN_MIGRATION_LOCK_TIMEOUT`` and
``ZERODOWN_MIGRATION_STATEMENT_TIMEOUT``, else 500 ms and 1 hour; ``"0"`` turns one off, as
in PostgreSQL. Offline (``alembic upgrade --sql``) it writes the ``SET`` statements at the
top of the script, which is also what ``zerodown migrations check`` looks for. For Django,
:func:`migrate_django` runs ``migrate`` the same way.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ._sqlstate import LOCK_NOT_AVAILABLE, sqlstate

logger = logging.getLogger("zerodown.migrations")

#: Well under a rehearsal's default --max-lock-wait (1 s): the app's queries queue behind a
#: waiting migration for at most this long.
DEFAULT_LOCK_TIMEOUT = "500ms"
DEFAULT_STATEMENT_TIMEOUT = "1h"
LOCK_TIMEOUT_VARIABLE = "ZERODOWN_MIGRATION_LOCK_TIMEOUT"
STATEMENT_TIMEOUT_VARIABLE = "ZERODOWN_MIGRATION_STATEMENT_TIMEOUT"
DEFAULT_ATTEMPTS = 5
#: Seconds before the second attempt; doubled for each one after, up to ``MAX_BACKOFF``.
DEFAULT_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: Indexes a failed ``CREATE INDEX CONCURRENTLY`` leaves behind: built, but never valid.
_INVALID_INDEXES = (
    "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid"
)


def timeout_settings(
    lock_timeout: str | None,
    statement_timeout: str | None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``SET`` statements of the timeouts: each given, else from the environment, else
    the default (PostgreSQL's units: ``2s``, ``500ms``; ``0`` for none)."""
    env = os.environ if environ is None else environ
    settings = []
    for name, value, variable, default in (
        ("lock_timeout", lock_timeout, LOCK_TIMEOUT_VARIABLE, DEFAULT_LOCK_TIMEOUT),
        (
            "statement_timeout",
            statement_timeout,
            STATEMENT_TIMEOUT_VARIABLE,
            DEFAULT_STATEMENT_TIMEOUT,
        ),
    ):
        chosen = value if value is not None else env.get(variable) or default
        if not chosen.replace(" ", "").replace(".", "").isalnum():
            where = f"{variable}={chosen}" if value is None else f"{name}={chosen!r}"
            raise ValueError(f"{where}: expected a duration such as '500ms' or '2s', or 0")
        settings.append(f"SET {name} = '{chosen.strip()}'")
    return settings


def run_migrations(
    context: Any,
    *,
    lock_timeout: str | None = None,
    statement_timeout: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
) -> None:
    """Alembic's ``context.run_migrations()`` in its transaction, under the timeouts, and
    again after a backoff when a lock was not granted in time (SQLSTATE 55P03).

    ``context`` is ``alembic.context`` after ``context.configure(...)``. Each attempt goes on
    from the revision the database is at: a migration's transaction that timed out rolled
    back, and an INVALID index left by a ``CREATE INDEX CONCURRENTLY`` that timed out is
    dropped before the next attempt.
    """
    settings = timeout_settings(lock_timeout, statement_timeout)
    if context.is_offline_mode():
        for statement in settings:
            context.execute(statement)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate() -> None:
        with context.begin_transaction():
            context.run_migrations()

    _retry(_AlembicSession(context.get_bind()), settings, migrate, attempts, backoff)


def migrate_django(
    *args: str,
    using: str = "default",
    lock_timeout: str | None = None,
    statement_timeout: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
) -> None:
    """Django's ``migrate`` (with ``args``, e.g. ``"notes"``) on database ``using``, under
    the timeouts and retried on a lock timeout, as :func:`run_migrations` does for Alembic.

    Django runs each atomic migration in its own transaction, so an attempt goes on from the
    last migration that committed.
    """
    from django.core.management import call_command
    from django.db import connections

    settings = timeout_settings(lock_timeout, statement_timeout)
    session = _DjangoSession(connections[using])
    _retry(
        session, settings, lambda: call_command("migrate", *args, database=using), attempts, backoff
    )


def retry_lock_timeouts(
    attempt: Callable[[], None],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    reset: Callable[[], None] | None = None,
) -> None:
    """Call ``attempt`` until it returns; after a lock timeout (SQLSTATE 55P03), call
    ``reset`` and wait ``backoff`` seconds (doubled each time, with jitter) before the next,
    ``attempts`` in all. Any other error, or the last lock timeout, is raised."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for number in range(1, attempts + 1):
        try:
            attempt()
            return
        except Exception as error:
            if sqlstate(error) != LOCK_NOT_AVAILABLE or number == attempts:
                raise
            wait = min(MAX_BACKOFF, backoff * 2 ** (number - 1)) * random.uniform(0.8, 1.2)
            logger.warning(
                "migration attempt %d of %d timed out waiting for a lock (%s); "
                "trying again in %.1fs",
                number,
                attempts,
                str(error).splitlines()[0],
                wait,
            )
            if reset is not None:
                reset()
            time.sleep(wait)


class _Session(Protocol):
    """The migration's database connection, as each framework hands it over."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...
    def outside_transaction(self, sql: str) -> None: ...
    def reset(self) -> None: ...


def _retry(
    session: _Session,
    settings: list[str],
    migrate: Callable[[], None],
    attempts: int,
    backoff: float,
) -> None:
    before = set(session.rows(_INVALID_INDEXES))

    def attempt() -> None:
        for statement in settings:
            session.outside_transaction(statement)
        # Left by a CREATE INDEX CONCURRENTLY that timed out; dropped in the attempt, since
        # DROP INDEX CONCURRENTLY waits for the same transactions the build did.
        for schema, index in sorted(set(session.rows(_INVALID_INDEXES)) - before):
            logger.warning(
                "dropping the INVALID index %s.%s a timed-out attempt left", schema, index
            )
            session.outside_transaction(f'DROP INDEX CONCURRENTLY IF EXISTS "{schema}"."{index}"')
        migrate()

    retry_lock_timeouts(attempt, attempts=attempts, backoff=backoff, reset=session.reset)


class _AlembicSession:
    """A SQLAlchemy connection: session ``SET``s committed, so that they hold for every
    transaction of the migration."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        found = [tuple(row) for row in self.connection.exec_driver_sql(sql).all()]
        self.connection.commit()
        return found

    def outside_transaction(self, sql: str) -> None:
        self.reset()
        level = self.connection.get_isolation_level()
        # DROP INDEX CONCURRENTLY refuses to run in a transaction block.
        self.connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            self.connection.exec_driver_sql(sql)
        finally:
            self.reset()
            self.connection.execution_options(isolation_level=level)

    def reset(self) -> None:
        if self.connection.in_transaction():
            self.connection.rollback()


class _DjangoSession:
    """A Django connection, in autocommit outside ``atomic()`` as Django keeps it."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]

    def outside_transaction(self, sql: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(sql)

    def reset(self) -> None:
        if not self.connection.get_autocommit():
            self.connection.rollback()
