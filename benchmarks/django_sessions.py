"""Switching a Django project's session engine to zerodown's during rolling deploys: who
is logged out at each step.

    python -m benchmarks.django_sessions [--runs 3] [--write]

The Django example (``examples/django_app``) on a throwaway PostgreSQL and one redis-server,
two instances under uvicorn, zerodown's traffic at 80 requests/s for 15 s and 10 users who
keep a session (``--session-users``). Each step is a rolling rehearsal from one release's
``DJANGO_SESSIONS`` to the next's. Target: the two steps of the documented path (``db`` →
``switching`` → ``zerodown``) lose no session and fail no request in every run; the
shortcut (``db`` → ``zerodown``) logs users out every time, which is why the path has two.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks._rehearse import rehearse
from benchmarks._report import table_report
from benchmarks.sessions import start_redis
from zerodown._cli.procs import stop_all

APP = (
    "examples.django_app.asgi:application --database postgres --rate 80 --duration 15 "
    "--session-users 10 --setup 'django-admin migrate --settings examples.django_app.settings'"
)


@dataclass(frozen=True)
class Step:
    before: str
    after: str
    #: Whether this step must keep every session (the documented path) or lose some.
    keeps_sessions: bool


STEPS = [
    Step("db", "switching", keeps_sessions=True),
    Step("switching", "zerodown", keeps_sessions=True),
    Step("db", "zerodown", keeps_sessions=False),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="rehearsals of each step")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    options = parser.parse_args()
    rows, met = [], True
    with tempfile.TemporaryDirectory(prefix="zerodown-django-sessions-") as scratch:
        redis, redis_url = start_redis(Path(scratch))
        try:
            for number, step in enumerate(STEPS):
                args = shlex.split(
                    f"{APP} --env REDIS_URL={redis_url} --env DJANGO_SESSIONS={step.before} "
                    f"--new-env DJANGO_SESSIONS={step.after}"
                )
                requests = failed = logged_out = users = lost = 0
                kept_every_time = lost_every_time = True
                for attempt in range(options.runs):
                    (run,) = rehearse(args, Path(scratch) / f"{number}-{attempt}")
                    sessions = run["sessions"]
                    requests += run["requests"]
                    failed += run["failed"]
                    users += sessions["users"]
                    logged_out += sessions["users_logged_out"]
                    lost += sessions["sessions_lost"]
                    kept = run["failed"] == 0 and sessions["users_logged_out"] == 0
                    kept_every_time &= kept
                    lost_every_time &= sessions["users_logged_out"] > 0
                ok = kept_every_time if step.keeps_sessions else lost_every_time
                met &= ok
                row = (
                    f"| `{step.before}` → `{step.after}` | {options.runs} | {requests:,} | "
                    f"{failed} | {logged_out} of {users} ({lost} sessions lost) |"
                )
                rows.append(row + ("" if ok else " **unexpected** |"))
                print(row, flush=True)
        finally:
            stop_all([redis])
    return table_report(
        "django-sessions",
        "Switching Django's session engine (`benchmarks/django_sessions.py`)",
        [
            "The Django example on a throwaway PostgreSQL 15 and a redis-server: a rolling",
            "rehearsal (two instances, uvicorn, 80 requests/s for 15 s, 10 users keeping a",
            "session) from each release's `DJANGO_SESSIONS` to the next's",
            "([the path](django.md#switching-engines-in-a-rolling-deploy)). Target: both steps",
            "of the path lose no session and fail no request in every run; going from `db` to",
            "`zerodown` in one release logs users out in every run.",
        ],
        ["step", "runs", "requests", "failed", "users logged out"],
        rows,
        write=options.write,
        met=met,
    )


if __name__ == "__main__":
    sys.exit(main())
