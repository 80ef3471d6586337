"""The rehearsal's database options and what it reads from PostgreSQL's jsonlog, without
a server: placeholders, plan problems, and errors and lock waits tied to releases."""

from __future__ import annotations

import json
from pathlib import Path

from zerodown._cli.postgres import Database
from zerodown._cli.rehearse.database import DatabaseReport, read_log
from zerodown._cli.rehearse.plan import RehearsalPlan

URL = "postgresql://app:secret@127.0.0.1:5544/notes"
RELEASES = {"v1-0": "v1", "v1-1": "v1", "v2-0": "v2"}


def test_placeholders_are_filled_and_other_braces_kept() -> None:
    env = {
        "POSTGRES_SERVER": "{db_host}",
        "POSTGRES_PORT": "{db_port}",
        "DSN": "host={db_host} dbname={db_name} user={db_user} password={db_password}",
        "FEATURES": '{"beta": true}',
    }
    assert Database(URL).fill(env) == {
        "POSTGRES_SERVER": "127.0.0.1",
        "POSTGRES_PORT": "5544",
        "DSN": "host=127.0.0.1 dbname=notes user=app password=secret",
        "FEATURES": '{"beta": true}',
    }


def test_the_plan_says_what_its_database_options_need() -> None:
    problems = RehearsalPlan(app="a:b", env={"PGHOST": "{db_host}"}).problems()
    assert "--env uses {db_host}: give --database postgres or --database-url" in problems
    problems = RehearsalPlan(app="a:b", database="postgres", database_url=URL).problems()
    assert "give --database postgres or --database-url, not both" in problems
    problems = RehearsalPlan(app="a:b", seed_rows=10).problems()
    assert any(problem.startswith("--seed-rows") for problem in problems)


def entry(at: str, application: str, severity: str, message: str, **more: object) -> str:
    record = {
        "timestamp": f"2026-12-02 03:00:{at} UTC",
        "pid": more.pop("pid", 100),
        "error_severity": severity,
        "application_name": application,
        "message": message,
        **more,
    }
    return json.dumps(record)


def test_errors_and_lock_waits_are_tied_to_releases_and_to_the_migrations_statement(
    tmp_path: Path,
) -> None:
    log = tmp_path / "postgresql.json"
    lines = [
        entry(
            "10.000", "zerodown-migrate", "LOG", "statement: ALTER TABLE notes RENAME text TO body"
        ),
        entry("10.100", "v1-0", "ERROR", "column notes.text does not exist", state_code="42703"),
        entry("10.200", "v1-1", "ERROR", "column notes.text does not exist", state_code="42703"),
        entry("10.300", "v2-0", "LOG", "execute <unnamed>: SELECT 1"),
        entry(
            "20.100",
            "v1-0",
            "LOG",
            "process 7 still waiting for RowExclusiveLock on relation 16390 of database 5 "
            "after 100.1 ms",
            pid=7,
            detail="Process holding the lock: 9. Wait queue: 7.",
        ),
        entry(
            "21.300",
            "v1-0",
            "LOG",
            "process 7 acquired RowExclusiveLock on relation 16390 of database 5 after 1300.5 ms",
            pid=7,
        ),
        '{"timestamp": "cut short by a stop',
    ]
    log.write_text("\n".join(lines) + "\n")
    report = DatabaseReport.build(
        url=URL, throwaway=True, steps=[], watch=None, log=read_log(log), releases=RELEASES
    )
    (error,) = report.errors
    assert (error.release, error.state_code, error.count) == ("v1", "42703", 2)
    # Only the steps' statements are the migration's; the app's own are not.
    assert [statement for _, step, statement in report.statements] == [
        "ALTER TABLE notes RENAME text TO body"
    ]
    cause = report.cause_before(error.first_at)
    assert cause is not None
    assert cause[1:] == ("migrate", "ALTER TABLE notes RENAME text TO body")
    (wait,) = report.app_waits(RELEASES)
    assert (wait.application_name, round(wait.seconds, 1), wait.blocked_by) == (
        "v1-0",
        1.3,
        ("pid 9",),
    )
