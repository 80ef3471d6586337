"""The notes example's migration cases: what ``zerodown migrations check`` says of each, and
what a rehearsal under load on a throwaway PostgreSQL shows.

    python -m benchmarks.migration_cases [--write]

Each case is linted (``--since 0001``: the revisions it adds) and rehearsed: release N
serves the k6 users of ``examples/notes/k6/users.js`` at 20 iterations/s while release
N+1's migration runs (``--migrate-at before-new`` unless said), then N+1 rolls in. The
target is the table of issue 19: the unsafe cases fail both, the safe ones pass both.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._rehearse import ZERODOWN, rehearse
from benchmarks._report import table_report
from benchmarks.sessions import start_redis
from zerodown._cli.procs import stop_all

CASES = "examples/notes/cases"
APP = (
    "examples.notes.app:create_app --factory --k6-script examples/notes/k6/users.js "
    "--rate 20 --duration 30 --database postgres"
)
BASE = "--setup 'alembic -c examples/notes/alembic.ini upgrade head' "
SEED = "--setup 'python -m examples.notes.seed' "


def release(columns: str, case: str | None, option: str = "--new-env") -> str:
    config = "examples/notes/alembic.ini" if case is None else f"{CASES}/{case}/alembic.ini"
    return f"{option} NOTES_COLUMNS={columns} {option} ALEMBIC_CONFIG={config} "


@dataclass(frozen=True)
class Case:
    name: str
    #: The case whose revisions are linted, and what the linter must say.
    lint: str
    rule: str | None
    rehearsal: str
    passes: bool


CASE_LIST = [
    Case(
        "rename a column release N reads",
        "rename",
        "renaming-column",
        BASE
        + SEED
        + "--seed-rows 10000 --migrate 'alembic upgrade head' "
        + release("body", "rename"),
        passes=False,
    ),
    Case(
        "expand: add body; N+1 writes both",
        "expand",
        None,
        BASE
        + SEED
        + "--seed-rows 10000 --migrate 'alembic upgrade head' "
        + release("write-both", "expand"),
        passes=True,
    ),
    Case(
        "switch: backfill body; N+2 reads it",
        "switch",
        None,
        BASE + SEED + "--seed-rows 10000 "
        f"--setup 'alembic -c {CASES}/expand/alembic.ini upgrade head' "
        + release("write-both", "expand", "--env")
        + "--migrate 'alembic upgrade head' "
        + release("read-body", "switch"),
        passes=True,
    ),
    Case(
        "contract: text nullable, N+3 writes body only, then drop text",
        "drop_text",
        None,
        BASE + SEED + "--seed-rows 10000 "
        f"--setup 'alembic -c {CASES}/switch/alembic.ini upgrade head' "
        + release("read-body", "switch", "--env")
        + "--migrate 'alembic upgrade head' "
        + release("body", "contract")
        + f"--contract 'alembic -c {CASES}/drop_text/alembic.ini upgrade head' ",
        passes=True,
    ),
    Case(
        "CREATE INDEX on 1M rows under writes",
        "index",
        "require-concurrent-index-creation",
        BASE
        + SEED
        + "--seed-rows 1000000 --migrate 'alembic upgrade head' "
        + release("text", "index"),
        passes=False,
    ),
    Case(
        "the same index CONCURRENTLY",
        "index_concurrently",
        None,
        BASE
        + SEED
        + "--seed-rows 1000000 --migrate 'alembic upgrade head' "
        + release("text", "index_concurrently"),
        passes=True,
    ),
    # After-new: N+1 must also run on the schema before its migration. The notes app's
    # readiness accepts only its own head, so the instance started after the migration
    # never turns ready, and the report says why.
    Case(
        "the same, --migrate-at after-new, N+1 ready only on its own head",
        "index_concurrently",
        None,
        BASE + SEED + "--seed-rows 1000000 --migrate-at after-new --ready-timeout 15 "
        f"--migrate 'alembic -c {CASES}/index_concurrently/alembic.ini upgrade head' "
        + release("text", None),
        passes=False,
    ),
    Case(
        "NOT NULL on a column N does not write",
        "not_null",
        "adding-not-nullable-field",
        BASE
        + SEED
        + "--seed-rows 10000 --migrate 'alembic upgrade head' "
        + release("write-both", "not_null"),
        passes=False,
    ),
]


def zerodown(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZERODOWN, *args], capture_output=True, text=True, timeout=900, check=False
    )


def lint(case: Case) -> tuple[int, list[str]]:
    ini = f"{CASES}/{case.lint}/alembic.ini"
    done = zerodown(["migrations", "check", ini, "--since", "0001", "--json", "-"])
    return done.returncode, [f["rule"] for f in json.loads(done.stdout)["findings"]]


def shown(run: dict[str, Any]) -> str:
    database = run["database"]
    parts = [f"{e['sqlstate']} x{e['count']} ({e['release']})" for e in database["errors"]]
    wait = database["longest_app_lock_wait_s"]
    parts.append(f"longest app lock wait {wait:.2f}s")
    reasons = run["verdict"]["reasons"]
    return ", ".join(parts) + (f"; {reasons[-1]}" if reasons else "")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    options = parser.parse_args()
    rows, met = [], True
    with tempfile.TemporaryDirectory(prefix="zerodown-migrations-") as scratch:
        redis, redis_url = start_redis(Path(scratch))
        try:
            env = {
                "REDIS_URL": redis_url,
                "ZERODOWN_SESSION_SECRETS": "the-notes-apps-secret-of-at-least-32-chars",
            }
            for number, case in enumerate(CASE_LIST):
                status, rules = lint(case)
                (run,) = rehearse(
                    shlex.split(APP + " " + case.rehearsal), Path(scratch) / str(number), env
                )
                expected_lint = (1, [case.rule]) if case.rule else (0, [])
                ok = (status, rules) == expected_lint and run["verdict"]["passed"] == case.passes
                met &= ok
                said = f"exit {status}" + (f": {', '.join(rules)}" if rules else "")
                verdict = "PASS" if run["verdict"]["passed"] else "FAIL"
                row = f"| {case.name} | {said} | {verdict}: {run['failed']} failed; {shown(run)} |"
                rows.append(row + ("" if ok else " **unexpected** |"))
                print(row, flush=True)
        finally:
            stop_all([redis])
    return table_report(
        "migration-cases",
        "Migration cases (`benchmarks/migration_cases.py`)",
        [
            "The notes example's cases (`examples/notes/cases/`): `zerodown migrations check",
            "--since 0001` on each, and a rolling rehearsal with the migration run while release",
            "N serves its k6 users (20 iterations/s, 30 s, a throwaway PostgreSQL 15). Target:",
            "the unsafe cases fail both, the safe ones pass both.",
        ],
        ["case", "`migrations check`", "rehearsal"],
        rows,
        write=options.write,
        met=met,
    )


if __name__ == "__main__":
    sys.exit(main())
