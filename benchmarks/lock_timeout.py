"""Does zerodown.migrations' lock_timeout keep the app's queries from queueing behind a
migration that waits for the app's own long transaction?

    python -m benchmarks.lock_timeout [--runs 5] [--write]

``benchmarks/report_app.py`` keeps a report's transaction open 2 s out of every 2.5 s; its
migration (``benchmarks/report_migration.py``) adds a column while the rehearsal's load
reads the table (``--rate 100``, ``--database postgres``, the migration before the new
release). The baseline, in the same run: the same migration with
``ZERODOWN_MIGRATION_LOCK_TIMEOUT=0``, which waits behind the report and queues every
request behind it. Target: with the helper, no run has a lock wait above the 1 s budget;
without it, most do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks._rehearse import rehearse
from benchmarks._report import table_report

REHEARSAL = [
    "benchmarks.report_app:app",
    "--rate", "100", "--duration", "25", "--fast-path", "/items", "--slow-fraction", "0",
    "--database", "postgres",
    "--setup", "python -m benchmarks.report_migration setup",
    "--migrate", "python -m benchmarks.report_migration migrate",
]  # fmt: skip
VARIANTS = {
    "lock_timeout 500 ms, retries (zerodown.migrations)": [],
    "no lock_timeout (the baseline)": ["--new-env", "ZERODOWN_MIGRATION_LOCK_TIMEOUT=0"],
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    options = parser.parse_args()
    rows: list[str] = []
    outcomes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="zerodown-lock-timeout-") as scratch:
        for name, extra in VARIANTS.items():
            runs = []
            for number in range(options.runs):
                runs += rehearse([*REHEARSAL, *extra], Path(scratch) / f"{len(rows)}-{number}")
                wait = runs[-1]["database"]["longest_app_lock_wait_s"]
                print(f"{name} {number + 1}/{options.runs}: longest wait {wait:.2f}s", flush=True)
            waits = sorted(run["database"]["longest_app_lock_wait_s"] for run in runs)
            over = sum(wait > 1.0 for wait in waits)
            failed = sum(run["failed"] for run in runs)
            outcomes[name] = over
            rows.append(
                f"| {name} | {options.runs} | {over} | {waits[len(waits) // 2]:.2f} s | "
                f"{waits[-1]:.2f} s | {failed} |"
            )
    helper, baseline = outcomes.values()
    met = helper == 0 and baseline > options.runs // 2
    return table_report(
        "lock-timeout",
        "Migrations under the app's long transactions (`benchmarks/lock_timeout.py`)",
        [
            "An app whose background report keeps a transaction open 2 s out of every 2.5 s,",
            "rehearsed at 100 requests/s while its migration adds a column (`--database",
            "postgres`). The migration under `zerodown.migrations` (lock_timeout 500 ms,",
            "retried with backoff) against the same migration without a lock_timeout, in the",
            "same run. Target: no lock wait above the 1 s budget with the helper; most runs",
            "above it without.",
        ],
        [
            "migration",
            "runs",
            "runs with a lock wait > 1 s",
            "median longest wait",
            "worst",
            "failed requests",
        ],
        rows,
        write=options.write,
        met=met,
    )


if __name__ == "__main__":
    sys.exit(main())
