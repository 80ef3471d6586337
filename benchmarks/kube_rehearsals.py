"""Rolling deploys behind a Kubernetes Service as kube-proxy makes it, every server and
worker class, with zerodown and without.

    python -m benchmarks.kube_rehearsals [--write]

Each rehearsal: ``--network kubernetes --propagation 2``, two replicas rolled one at a
time (maxSurge 1, maxUnavailable 0) at 200 requests/s for 20 s, then the same deploy with
``ZERODOWN_DISABLED=1`` (``--compare``): the baseline, measured in the same run. Target: 0
failed with zerodown for every server; failures without; and failures with a lame-duck
delay shorter than the propagation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._rehearse import rehearse
from benchmarks._report import table_report

COMMON = ["--network", "kubernetes", "--propagation", "2", "--rate", "100", "--duration", "20"]
#: The rehearsal's own gunicorn config, with zerodown's hooks.
GUNICORN = ["--server", "gunicorn"]
STARLETTE, FLASK = "examples.starlette_app:app", "examples.flask_app:app"
CASES: dict[str, list[str]] = {
    "Starlette, uvicorn": [STARLETTE],
    "Starlette, gunicorn -k uvicorn (zerodown's)": [STARLETTE, *GUNICORN, "-k", "uvicorn"],
    "Starlette, gunicorn -k asgi": [STARLETTE, *GUNICORN, "-k", "asgi"],
    "Flask, gunicorn -k gthread": [FLASK, *GUNICORN, "-k", "gthread"],
    "Flask, gunicorn -k sync": [FLASK, *GUNICORN, "-k", "sync", "--workers", "8"],
}
SHORT_DELAY = [STARLETTE, "--shutdown-delay", "1"]


def phases(run: dict[str, Any]) -> str:
    found = run["network"]["failures_by_phase"]
    return (
        "; ".join(
            f"{phase}: " + ", ".join(f"{kind} {n}" for kind, n in kinds.items())
            for phase, kinds in found.items()
        )
        or "-"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    options = parser.parse_args()
    rows, met = [], True
    with tempfile.TemporaryDirectory(prefix="zerodown-kube-") as scratch:
        for number, (name, args) in enumerate(CASES.items()):
            with_zerodown, without = rehearse(
                [*args, *COMMON, "--compare"], Path(scratch) / str(number)
            )
            met &= with_zerodown["failed"] == 0 and without["failed"] > 0
            rows.append(
                f"| {name} | {with_zerodown['requests']} | {with_zerodown['failed']} | "
                f"{without['failed']} | {phases(without)} |"
            )
            print(rows[-1], flush=True)
        (short,) = rehearse([*SHORT_DELAY, *COMMON], Path(scratch) / "short")
        met &= short["failed"] > 0
        rows.append(
            f"| Starlette, uvicorn, ZERODOWN_SHUTDOWN_DELAY=1 | {short['requests']} | "
            f"{short['failed']} | - | {phases(short)} |"
        )
        print(rows[-1], flush=True)
    return table_report(
        "kube-rehearsals",
        "Behind a Kubernetes Service (`benchmarks/kube_rehearsals.py`)",
        [
            "`zerodown rehearse --network kubernetes --propagation 2`: kube-proxy's iptables",
            "rules in a network namespace, the kubelet's probes, two replicas rolled one at a",
            "time at 100 requests/s (20 % of them 300 ms slow) for 20 s; then the same",
            "deploy with `ZERODOWN_DISABLED=1` in the same run. Target: 0 failed with",
            "zerodown for every server (gunicorn with the rehearsal's config and zerodown's",
            "hooks), failures without, and failures when the lame-duck delay is shorter than",
            "the propagation.",
        ],
        ["server", "requests", "failed with zerodown", "failed without", "without: by phase"],
        rows,
        write=options.write,
        met=met,
    )


if __name__ == "__main__":
    sys.exit(main())
