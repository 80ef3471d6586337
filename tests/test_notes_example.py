"""The notes example, rehearsed as docs/rehearse.md walks through it: its own k6 users,
PostgreSQL migrated by Alembic, sessions in Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


#: The notes cases' migrations, rehearsed on a throwaway PostgreSQL (docs/migrations.md).
MIGRATION = (
    f"{NOTES} --rate 20 --duration 22 --database postgres "
    "--setup 'alembic -c examples/notes/alembic.ini upgrade head' "
    "--setup 'python -m examples.notes.seed' --migrate 'alembic upgrade head' "
)


@pytest.fixture
def sessions_env(redis_server: Service) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "ZERODOWN_SESSION_SECRETS": "the-notes-apps-secret-of-at-least-32-chars",
    }


def failed_migration(tmp_path: Path, case: str, options: str, env: dict[str, str]) -> Any:
    """The run of a rehearsal of ``case``'s migration that must fail its verdict."""
    config = f"--new-env ALEMBIC_CONFIG=examples/notes/cases/{case}/alembic.ini "
    done, document = rehearse(tmp_path, MIGRATION + config + options, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = document["runs"]
    return run


@pytest.mark.e2e
def test_a_rename_under_load_fails_release_n_and_the_report_names_the_rename(
    tmp_path: Path, sessions_env: dict[str, str]
) -> None:
    run = failed_migration(
        tmp_path, "rename", "--seed-rows 1000 --new-env NOTES_COLUMNS=body", sessions_env
    )
    # The requests that failed are release N's: N+1 reads the renamed column.
    failed_requests = {f["release"] for f in run["failed_requests"] if f["kind"].startswith("http")}
    assert failed_requests == {"v1"}
    database = run["database"]
    assert [step["step"] for step in database["steps"]] == ["setup", "setup", "migrate"]
    assert {error["sqlstate"] for error in database["errors"]} == {"42703"}
    (cause,) = database["causes"]
    assert cause.startswith("release v1 answered 500 to ")
    assert "after the migrate step's `ALTER TABLE notes RENAME text TO body`" in cause


@pytest.mark.e2e
def test_an_index_built_without_concurrently_holds_the_writes_past_the_lock_budget(
    tmp_path: Path, sessions_env: dict[str, str]
) -> None:
    run = failed_migration(
        tmp_path, "index", "--seed-rows 400000 --max-lock-wait 0.2", sessions_env
    )
    assert run["failed"] == 0
    database = run["database"]
    assert database["longest_app_lock_wait_s"] > 0.2
    waits = [wait for wait in database["lock_waits"] if wait["release"] == "v1"]
    assert waits
    assert all("zerodown-migrate" in wait["blocked_by"] for wait in waits)
    assert any("--max-lock-wait" in reason for reason in run["verdict"]["reasons"])
