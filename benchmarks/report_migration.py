"""The migration of ``benchmarks/report_app.py``: one ``ALTER TABLE items ADD COLUMN``,
under ``zerodown.migrations``' lock_timeout and retries (``ZERODOWN_MIGRATION_LOCK_TIMEOUT=0``
for none: the ALTER then waits as long as the report).

    DATABASE_URL=postgresql://... python -m benchmarks.report_migration setup|migrate
"""

from __future__ import annotations

import os
import sys

import psycopg

from benchmarks.report_app import SCHEMA
from zerodown.migrations import retry_lock_timeouts, timeout_settings


def main(step: str) -> None:
    url = os.environ["DATABASE_URL"]
    if step == "setup":
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(SCHEMA)
            db.execute("INSERT INTO items (name) SELECT 'seed' FROM generate_series(1, 10000)")
        return

    def attempt() -> None:
        with psycopg.connect(url, autocommit=True) as db:
            for statement in timeout_settings(None, None):
                db.execute(statement)
            db.execute("ALTER TABLE items ADD COLUMN IF NOT EXISTS price int")

    retry_lock_timeouts(attempt, attempts=8, backoff=0.5)


if __name__ == "__main__":
    main(sys.argv[1])
