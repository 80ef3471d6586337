"""The notes example, rehearsed as docs/rehearse.md walks through it: its own k6 users,
PostgreSQL migrated by Alembic, sessions in Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bed import REPO, Service
from tests.cli.test_rehearse import rehearse
from tests.health.test_dependencies import database as database  # the fixture

NOTES = "examples.notes.app:create_app --factory --k6-script examples/notes/k6/users.js"


@pytest.fixture
def notes_env(database: str, redis_server: Service) -> dict[str, str]:
    """The environment a user of the notes app has: its database migrated to the head."""
    env = {
        "DATABASE_URL": "postgresql+psycopg://" + database.partition("://")[2],
        "REDIS_URL": redis_server.url,
        "ZERODOWN_SESSION_SECRETS": "the-notes-apps-secret-of-at-least-32-chars",
    }
    alembic = str(Path(sys.executable).with_name("alembic"))
    subprocess.run(
        [alembic, "-c", "examples/notes/alembic.ini", "upgrade", "head"],
        cwd=REPO,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    return env


@pytest.mark.e2e
def test_the_notes_example_rolls_with_its_own_users_and_none_is_logged_out(
    tmp_path: Path, notes_env: dict[str, str]
) -> None:
    done, document = rehearse(tmp_path, f"{NOTES} --rate 20 --compare", env=notes_env)
    assert done.returncode == 0, done.stdout + done.stderr
    with_zerodown, without = document["runs"]
    assert with_zerodown["failed"] == 0
    assert with_zerodown["sessions"]["sessions_lost"] == 0
    paths = {path["path"] for path in with_zerodown["latency_ms"]["by_path"]}
    assert {"GET /notes", "POST /notes"} <= paths
    assert without["failed"] > 0, "the comparison must show what zerodown prevents"


@pytest.mark.e2e
def test_the_notes_example_passes_a_canary_with_its_own_users(
    tmp_path: Path, notes_env: dict[str, str]
) -> None:
    done, document = rehearse(
        tmp_path,
        f"{NOTES} --rate 20 --duration 20 --strategy canary --canary-pause 2",
        env=notes_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["failed"] == 0
    assert run["deploy"]["rolled_back"] is None
    assert run["sessions"]["sessions_lost"] == run["sessions"]["writes_lost"] == 0
    assert run["per_release"]["v2"] > 0


@pytest.mark.e2e
def test_declared_traffic_sees_the_users_a_new_secret_logs_out(
    tmp_path: Path, notes_env: dict[str, str]
) -> None:
    done, document = rehearse(
        tmp_path,
        "examples.notes.app:create_app --factory --traffic examples/notes/traffic.toml "
        "--rate 30 --new-env ZERODOWN_SESSION_SECRETS=a-secret-the-old-release-never-had-0123",
        env=notes_env,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    assert run["load"]["traffic"] == "examples/notes/traffic.toml"
    # The traffic's own logged-in marker sees them logged out, by the new release first...
    logouts = run["failures_by_kind"]["check:logged in"]
    assert logouts > 0
    assert "v2" in run["failures_by_release"]
    # ...and so do the rehearsal's own users.
    assert run["sessions"]["users_logged_out"] == run["sessions"]["users"]
    assert not [kind for kind in run["failures_by_kind"] if kind.startswith("http_")]
