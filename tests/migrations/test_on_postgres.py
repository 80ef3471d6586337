"""Each rule of ``zerodown migrations check`` against a real PostgreSQL: the unsafe
statement, run while the app writes, takes the lock (or rewrites the table, or breaks the
old release's query) that the rule says it does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.bed import REPO
from tests.health.test_dependencies import database as database  # the fixture
from tests.migrations import hold_open
from zerodown._cli.migrations.rules import Statement, lint
from zerodown.migrations import LOCK_TIMEOUT_VARIABLE as ZERODOWN_LOCK
from zerodown.migrations import retry_lock_timeouts

NOTES = REPO / "examples" / "notes"
ALEMBIC = str(Path(sys.executable).with_name("alembic"))

SCHEMA = (
    "CREATE TABLE users (id int PRIMARY KEY)",
    "INSERT INTO users VALUES (1)",
    "CREATE TABLE notes (id serial PRIMARY KEY, user_id int, text varchar(40) NOT NULL, body text)",
    "INSERT INTO notes (user_id, text) SELECT 1, 'note ' || n FROM generate_series(1, 1000) n",
)
#: The old release's write, as the app sends it.
OLD_INSERT = "INSERT INTO notes (user_id, text) VALUES (1, 'from release N')"


@pytest.fixture
def url(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as db:
        for statement in SCHEMA:
            db.execute(statement)
    return database


def rules_of(sql: str) -> set[str]:
    return {finding.rule for finding in lint([Statement(sql, "t.sql", 1)])} - {
        "require-lock-timeout"
    }


@pytest.mark.parametrize(
    ("statement", "rule", "lock"),
    [
        (
            "CREATE INDEX notes_text ON notes (text)",
            "require-concurrent-index-creation",
            "ShareLock",
        ),
        (
            "ALTER TABLE notes ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)",
            "constraint-missing-not-valid",
            "ShareRowExclusiveLock",
        ),
        ("ALTER TABLE notes ALTER COLUMN body SET NOT NULL", "adding-not-nullable-field", None),
        ("ALTER TABLE notes ADD CONSTRAINT u UNIQUE (text)", "disallowed-unique-constraint", None),
        ("ALTER TABLE notes ALTER COLUMN user_id TYPE bigint", "changing-column-type", None),
        (
            "ALTER TABLE notes ADD COLUMN token float DEFAULT random()",
            "adding-field-with-default",
            None,
        ),
        ("ALTER TABLE notes ADD COLUMN seq serial", "adding-serial-field", None),
    ],
)
def test_a_lock_rule_predicts_the_lock_that_stops_the_apps_writes(
    url: str, statement: str, rule: str, lock: str | None
) -> None:
    assert rule in rules_of(statement)
    if rule == "adding-not-nullable-field":
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("UPDATE notes SET body = text")
    with psycopg.connect(url) as migration, psycopg.connect(url, autocommit=True) as app:
        before = app.execute("SELECT relfilenode FROM pg_class WHERE relname = 'notes'").fetchone()
        migration.execute(statement)  # its transaction stays open: the lock is held
        held = {
            row[0]
            for row in app.execute(
                "SELECT mode FROM pg_locks WHERE relation = 'notes'::regclass AND pid = %s "
                "AND granted",
                (migration.info.backend_pid,),
            )
        }
        assert (lock or "AccessExclusiveLock") in held
        app.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            app.execute(OLD_INSERT)
        migration.commit()
        after = app.execute("SELECT relfilenode FROM pg_class WHERE relname = 'notes'").fetchone()
    rewrites = rule in ("changing-column-type", "adding-field-with-default", "adding-serial-field")
    assert (before != after) == rewrites


@pytest.mark.parametrize(
    ("statement", "rule", "old_query", "error"),
    [
        (
            "ALTER TABLE notes RENAME COLUMN text TO summary",
            "renaming-column",
            "SELECT text FROM notes LIMIT 1",
            psycopg.errors.UndefinedColumn,
        ),
        (
            "DROP TABLE notes",
            "ban-drop-table",
            "SELECT 1 FROM notes",
            psycopg.errors.UndefinedTable,
        ),
        (
            "ALTER TABLE notes DROP COLUMN text",
            "ban-drop-column",
            OLD_INSERT,
            psycopg.errors.UndefinedColumn,
        ),
        (
            "ALTER TABLE notes ALTER COLUMN body SET NOT NULL",
            "adding-not-nullable-field",
            OLD_INSERT,
            psycopg.errors.NotNullViolation,
        ),
        (
            "ALTER TABLE notes ALTER COLUMN text TYPE varchar(5)",
            "narrowing-column-type",
            "INSERT INTO notes (user_id, text) VALUES (1, 'longer than five')",
            psycopg.errors.StringDataRightTruncation,
        ),
    ],
)
def test_an_old_code_rule_predicts_the_error_release_n_gets(
    url: str, statement: str, rule: str, old_query: str, error: type[Exception]
) -> None:
    history = [
        Statement("CREATE TABLE notes (text varchar(40) NOT NULL)", "0001.sql", 1),
        Statement(statement, "0002.sql", 1),
    ]
    assert rule in {finding.rule for finding in lint(history)}
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE notes SET body = text, text = left(text, 5)")
        db.execute(statement)
        with pytest.raises(error):
            db.execute(old_query)


def test_a_lock_timeout_with_retries_never_queues_the_app_behind_the_migration(url: str) -> None:
    """A report's transaction holds notes for 1.5 s. The migration's ALTER without a
    lock_timeout queues every reader behind it; with zerodown's retry, readers wait at most
    its lock_timeout, and the ALTER lands once the report is done."""

    def longest_read_while(migrate: threading.Thread) -> float:
        longest = 0.0
        with psycopg.connect(url, autocommit=True) as reader:
            migrate.start()
            while migrate.is_alive():
                started = time.monotonic()
                reader.execute("SELECT count(*) FROM notes")
                longest = max(longest, time.monotonic() - started)
                time.sleep(0.02)
        migrate.join()
        return longest

    def alter(column: str, lock_timeout: str | None) -> None:
        def attempt() -> None:
            with psycopg.connect(url, autocommit=True) as migration:
                if lock_timeout is not None:
                    migration.execute(f"SET lock_timeout = '{lock_timeout}'")
                migration.execute(f"ALTER TABLE notes ADD COLUMN {column} int")

        retry_lock_timeouts(attempt, attempts=10, backoff=0.2)

    report = hold_open(url, "SELECT count(*) FROM notes", 1.5)
    unguarded = longest_read_while(threading.Thread(target=alter, args=("a", None)))
    report.join()
    report = hold_open(url, "SELECT count(*) FROM notes", 1.5)
    guarded = longest_read_while(threading.Thread(target=alter, args=("b", "200ms")))
    report.join()
    assert unguarded > 1.0, "without lock_timeout the readers queue behind the ALTER"
    assert guarded < 1.0, "with it they wait at most one lock_timeout (plus a little)"
    with psycopg.connect(url) as db:
        columns = {
            row[0]
            for row in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'notes'"
            )
        }
    assert {"a", "b"} <= columns


def alembic(case: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALEMBIC, "-c", str(case), "upgrade", "head"],
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_migrations_drops_the_invalid_index_a_timed_out_build_left_and_retries(
    database: str,
) -> None:
    """The notes env.py runs under zerodown.migrations.run_migrations. An open write
    transaction makes CREATE INDEX CONCURRENTLY wait past its lock_timeout, which leaves
    an INVALID index; the retry drops it and builds the index once the writer is done."""
    assert alembic(NOTES / "alembic.ini", database).returncode == 0
    writer = hold_open(
        database,
        "WITH u AS (INSERT INTO users (name, salt, password_hash) VALUES ('w', '', '') "
        "RETURNING id) INSERT INTO notes (user_id, text) SELECT id, 'open' FROM u",
        1.5,
    )
    done = alembic(
        NOTES / "cases" / "index_concurrently" / "alembic.ini",
        database,
        ZERODOWN_MIGRATION_LOCK_TIMEOUT="200ms",
    )
    writer.join()
    assert done.returncode == 0, done.stderr
    assert "timed out waiting for a lock" in done.stderr
    with psycopg.connect(database) as db:
        indexes = db.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
            "ON c.oid = i.indexrelid WHERE c.relname LIKE 'notes_text%'"
        ).fetchall()
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert indexes == [("notes_text", True)]
    assert version == [("0002",)]


def test_offline_sql_starts_with_the_timeouts_the_linter_looks_for(database: str) -> None:
    done = subprocess.run(
        [ALEMBIC, "-c", str(NOTES / "alembic.ini"), "upgrade", "head", "--sql"],
        cwd=REPO,
        env={**os.environ, ZERODOWN_LOCK: "250ms"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    first = [line for line in done.stdout.splitlines() if line.startswith("SET ")]
    assert first[:2] == ["SET lock_timeout = '250ms';", "SET statement_timeout = '1h';"]


def test_the_rules_on_transactions_and_required_columns_predict_the_error(url: str) -> None:
    in_transaction = "BEGIN;\nCREATE INDEX CONCURRENTLY notes_text ON notes (text);\nCOMMIT;"
    statements = [Statement(sql, "t.sql", n) for n, sql in enumerate(in_transaction.split("\n"))]
    assert "ban-concurrent-index-creation-in-transaction" in {f.rule for f in lint(statements)}
    required = "ALTER TABLE notes ADD COLUMN owner int NOT NULL"
    assert "adding-required-field" in rules_of(required)
    with psycopg.connect(url) as db:
        with pytest.raises(psycopg.errors.ActiveSqlTransaction):
            db.execute("CREATE INDEX CONCURRENTLY notes_text ON notes (text)")
        db.rollback()
        # On a table with rows it fails outright; on an empty one, release N's inserts do.
        with pytest.raises(psycopg.errors.NotNullViolation):
            db.execute(required)
        db.rollback()
        db.execute("TRUNCATE notes")
        db.execute(required)
        with pytest.raises(psycopg.errors.NotNullViolation):
            db.execute(OLD_INSERT)
