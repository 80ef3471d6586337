"""zerodown.django in a real Django project (tests/apps/django_library, in a child Python:
Django's settings are process-wide): its health checks from Django's own connections, on
PostgreSQL and SQLite, and its system checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bed import REPO
from tests.health.test_dependencies import database as database  # the fixture

pytestmark = pytest.mark.servers  # each test runs Django in a child Python

SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.apps.django_library.settings"}
#: Runs the checks zerodown.django registered, and prints each one's status and output.
RUN_CHECKS = """
import json, django
django.setup()
import zerodown
report = zerodown.get_health().run_sync(zerodown.get_health().checks)
print(json.dumps({c.name: [r.status, r.output] for c, r in report.results}))
"""


def python(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ZERODOWN_")}
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env={**clean, **SETTINGS, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def checks(url: str) -> dict[str, list[str | None]]:
    done = python("-c", RUN_CHECKS, DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str | None]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_database_the_cache_and_the_migrations_are_checked_through_django(
    backend: str, database: str, tmp_path: Path
) -> None:
    url = database if backend == "postgresql" else f"sqlite:///{tmp_path / 'db.sqlite3'}"
    before = checks(url)
    assert before["database:default"][0] == "pass"
    assert before["cache:default"][0] == "pass"
    # The unapplied migrations, named, in a line a person reads (not the whole plan).
    assert before["migrations:default"] == [
        "fail",
        "2 migrations not applied on 'default': library.0001_initial, "
        "library.0002_isbn_and_heading; run manage.py migrate",
    ]
    migrated = python("-m", "django", "migrate", DATABASE_URL=url)
    assert migrated.returncode == 0, migrated.stderr
    assert checks(url)["migrations:default"][0] == "pass"
    # A database that is not there: the check fails, bounded, with the driver's reason.
    if backend == "postgresql":
        down = checks("postgresql://postgres@127.0.0.1:1/postgres")
        assert down["database:default"][0] == "fail"


@pytest.mark.parametrize(
    ("engine", "found"),
    [
        ("django.contrib.sessions.backends.cache", "zerodown.W001"),
        ("django.contrib.sessions.backends.cached_db", "zerodown.W001"),
        ("django.contrib.sessions.backends.file", "zerodown.W002"),
        ("django.contrib.sessions.backends.db", None),
    ],
)
def test_manage_py_check_warns_of_sessions_that_live_in_one_process(
    engine: str, found: str | None
) -> None:
    done = python("-m", "django", "check", "--tag", "zerodown", TEST_SESSION_ENGINE=engine)
    assert done.returncode == 0, done.stderr
    if found is None:
        assert "System check identified no issues" in done.stdout, done.stderr
    else:
        assert found in done.stderr, done.stderr


def test_manage_py_check_reports_zerodowns_settings_and_budget() -> None:
    done = python("-m", "django", "check", "--tag", "zerodown", ZERODOWN_GRACE_PERIOD="10")
    assert "zerodown.W003" in done.stderr
    assert "ZERODOWN_GRACE_PERIOD is 10s" in done.stderr
    done = python("-m", "django", "check", "--tag", "zerodown", ZERODOWN_SHUTDOWN_DELAY="soon")
    assert done.returncode == 1
    assert "zerodown.E001" in done.stderr
