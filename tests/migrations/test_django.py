"""Django's migrations: read through ``sqlmigrate``'s SQL on a throwaway PostgreSQL, and run
by ``zerodown.migrations.migrate_django`` under a lock_timeout with retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from tests.bed import REPO
from tests.health.test_dependencies import database as database  # the fixture
from tests.migrations import hold_open
from zerodown.migrations import LOCK_TIMEOUT_VARIABLE

SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.apps.django_library.settings"}
MIGRATION = "tests/apps/django_library/library/migrations/0002_isbn_and_heading.py"


def run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env={**os.environ, **SETTINGS, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.servers  # a PostgreSQL of the command's own
def test_check_reads_each_operation_of_a_django_migration_on_a_throwaway_database() -> None:
    done = run(
        "-m", "zerodown._cli.main", "migrations", "check", "--django", "library",
        "--database", "postgres", "--json", "-",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    findings = [(f["rule"], f["path"], f["line"]) for f in json.loads(done.stdout)["findings"]]
    # AddField (line 11) with preserve_default=False: Django adds the column with a default
    # for the existing rows, then drops it, and release N's inserts fail from then on.
    assert ("adding-required-field", MIGRATION, 11) in findings
    assert ("require-concurrent-index-creation", MIGRATION, 11) in findings
    assert ("renaming-column", MIGRATION, 17) in findings
    # The initial migration creates its table: nothing waits on it.
    assert all(path == MIGRATION for _, path, _ in findings)


def test_migrate_django_waits_out_a_long_transaction_in_short_lock_timeouts(database: str) -> None:
    first = run("-m", "django", "migrate", "library", "0001", DATABASE_URL=database)
    assert first.returncode == 0, first.stderr
    report = hold_open(database, "SELECT count(*) FROM library_book", 1.5)
    done = run(
        "-c",
        "import django; django.setup(); "
        "from zerodown.migrations import migrate_django; migrate_django('library', backoff=0.3)",
        DATABASE_URL=database,
        **{LOCK_TIMEOUT_VARIABLE: "200ms"},
    )
    report.join()
    assert done.returncode == 0, done.stderr
    assert "timed out waiting for a lock" in done.stderr
    with psycopg.connect(database) as db:
        applied = db.execute(
            "SELECT name FROM django_migrations WHERE app = 'library' ORDER BY name"
        ).fetchall()
    assert applied == [("0001_initial",), ("0002_isbn_and_heading",)]
