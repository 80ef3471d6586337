"""Does the rehearsal's verdict pass clean deploys and fail a real regression?

    python -m benchmarks.rehearsal_verdicts [--runs 20] [--write]

Runs ``--runs`` consecutive clean rehearsals of each example — Starlette rolling under
uvicorn (with zerodown's slow path and without: a p99 of a few milliseconds), Flask
rolling under gunicorn gthread, Starlette reloaded by gunicorn HUP — and
then rehearsals of a new release 500 ms slower per request (``benchmarks/slow_release.py``).
Every run is judged by the verdict (``--max-p99-ratio 1.5``, ``--p99-floor-ms 50``,
``--min-requests 200``, per path) and, as the baseline measured in the same runs, by the
gate it replaces: the p99 of every request during the deploy over the steady p99, ratio
only. Target: every clean run passes, every regression fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._rehearse import rehearse
from benchmarks._report import table_report

LOAD = ["--rate", "150", "--duration", "20"]
CLEAN = {
    "Starlette, rolling, uvicorn": ["examples.starlette_app:app"],
    # Fast requests only: a p99 of a few ms, where the ratio alone fails clean deploys.
    "Starlette, rolling, uvicorn, fast path only": [
        "examples.starlette_app:app",
        "--slow-fraction",
        "0",
    ],
    "Flask, rolling, gunicorn gthread": [
        "examples.flask_app:app",
        "--server",
        "gunicorn",
        "-k",
        "gthread",
    ],
    "Starlette, HUP, gunicorn -k uvicorn": [
        "examples.starlette_app:app",
        "--server",
        "gunicorn",
        "-k",
        "uvicorn",
        "--strategy",
        "hup",
        "--instances",
        "1",
    ],
}
REGRESSION = ["examples.starlette_app:app", "--new-app", "benchmarks.slow_release:app"]
#: The gate before per-path judging: overall p99 during the deploy / steady p99.
OLD_RATIO = 1.5


def old_gate_fails(run: dict[str, Any]) -> bool:
    latency = run["latency_ms"]
    steady, during = latency["steady"].get("p99"), latency["during_deploy"].get("p99")
    return bool(steady and during and during > OLD_RATIO * steady)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="clean runs per example")
    parser.add_argument("--regressions", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    options = parser.parse_args()
    rows: list[str] = []
    met = True
    with tempfile.TemporaryDirectory(prefix="zerodown-verdicts-") as scratch:
        cases = [(name, args, options.runs, True) for name, args in CLEAN.items()]
        cases.append(("500 ms slower new release", REGRESSION, options.regressions, False))
        for name, args, runs, clean in cases:
            results = []
            for number in range(runs):
                results += rehearse([*args, *LOAD], Path(scratch) / f"{len(rows)}-{number}")
                print(f"{name} {number + 1}/{runs}: {results[-1]['verdict']}", flush=True)
            passed = sum(run["verdict"]["passed"] for run in results)
            old = sum(old_gate_fails(run) for run in results)
            failed = sum(run["failed"] for run in results)
            reasons = sorted({r for run in results for r in run["verdict"]["reasons"]})
            met &= passed == runs if clean else passed == 0
            shown = "; ".join(reasons[:2]) or "-"
            rows.append(f"| {name} | {runs} | {passed} | {runs - old} | {failed} | {shown} |")
    return table_report(
        "rehearsal-verdicts",
        "Rehearsal verdicts (`benchmarks/rehearsal_verdicts.py`)",
        [
            "Consecutive rehearsals (`--rate 150 --duration 20`), each judged by the verdict",
            "(per path: p99 over 1.5x **and** 50 ms above its p99 before the deploy, paths",
            "with 200 requests or more in both windows) and, in the same runs, by the gate it",
            "replaced (every request's p99 during the deploy over the steady p99, 1.5x).",
            "Target: every clean run passes; every run of a release 500 ms slower fails.",
        ],
        ["rehearsal", "runs", "passed", "old gate passed", "failed requests", "why runs failed"],
        rows,
        write=options.write,
        met=met,
    )


if __name__ == "__main__":
    sys.exit(main())
