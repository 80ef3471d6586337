"""Rehearse a rolling deploy of the Starlette example, with and without zerodown.

    bash scripts/zd rehearse            # about 2 x 30 s
    python -m examples.rolling_restart --duration 15 --rate 100

Two uvicorn instances run behind HAProxy (active checks on the readiness path, no retries,
as strict as kube-proxy); k6 sends open-loop load, 20% of it 300 ms requests; each instance
in turn gets SIGTERM and is replaced. The exit status is 1 when the run with zerodown lost a
request.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from zerodown._rehearsal import RehearsalPlan, RehearsalReport, rehearse_rolling


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="examples.starlette_app:app")
    parser.add_argument("--rate", type=int, default=150, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per run")
    parser.add_argument("--no-compare", action="store_true", help="skip the run without zerodown")
    args = parser.parse_args(argv)

    reports: list[RehearsalReport] = []
    runs = [False] if args.no_compare else [False, True]
    for disabled in runs:
        plan = RehearsalPlan(args.app, rate=args.rate, duration=args.duration, disabled=disabled)
        name = "without zerodown" if disabled else "with zerodown"
        workdir = Path(tempfile.mkdtemp(prefix="zerodown-rehearsal-"))
        print(f"\n== rehearsal {name} (logs in {workdir})", flush=True)
        report = rehearse_rolling(plan, workdir, lambda line: print(f"   {line}", flush=True))
        reports.append(report)
    print()
    for report in reports:
        print(report.render())
    with_zerodown = reports[0]
    failed = len(with_zerodown.result.failed)
    print(
        f"\nverdict: {'PASS' if failed == 0 else 'FAIL'} - {failed} failed requests with zerodown"
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
