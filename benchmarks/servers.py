"""hypercorn, granian and uWSGI rehearsed under load behind HAProxy, with and without
zerodown: a rolling deploy, each server's reload, and worker recycling.

    python -m benchmarks.servers [--write]

Each row is one ``zerodown rehearse --compare`` (two instances, 80 requests/s of
zerodown's traffic, 20 % of them 300 ms slow): the same run with zerodown and with
``ZERODOWN_DISABLED=1``. Target: 0 failed requests with zerodown in every row; the
"without" column is what the server does on its own.
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

ASGI, WSGI = "examples.starlette_app:app", "examples.flask_app:app"


@dataclass(frozen=True)
class Row:
    server: str
    what: str
    #: How zerodown gets its lame-duck window there.
    how: str
    options: str


ROWS = [
    Row("hypercorn", "rolling", "SIGTERM held on its loop", f"{ASGI} --server hypercorn"),
    Row(
        "hypercorn --workers 2",
        "rolling",
        "preStop endpoint",
        f"{ASGI} --server hypercorn --workers 2",
    ),
    Row(
        "hypercorn --workers 2",
        "`--max-requests 200` recycling, rolling",
        "preStop endpoint",
        f"{ASGI} --server hypercorn --workers 2 --server-args '--max-requests 200'",
    ),
    Row(
        "hypercorn --workers 2",
        "reload (SIGHUP)",
        "-",
        f"{ASGI} --server hypercorn --workers 2 --strategy hup",
    ),
    Row("granian (ASGI)", "rolling", "SIGTERM held on its loop", f"{ASGI} --server granian"),
    Row(
        "granian (ASGI)",
        "reload (SIGHUP)",
        "SIGTERM held on its loop",
        f"{ASGI} --server granian --strategy hup --duration 40",
    ),
    Row(
        "granian (WSGI)",
        "rolling",
        "preStop endpoint",
        f"{WSGI} --server granian --interface wsgi",
    ),
    Row("uWSGI", "rolling", "preStop endpoint", f"{WSGI} --server uwsgi"),
    Row(
        "uWSGI",
        "`--max-requests 200` recycling, rolling",
        "preStop endpoint",
        f"{WSGI} --server uwsgi --server-args '--max-requests 200'",
    ),
    Row("uWSGI", "chain reload", "-", f"{WSGI} --server uwsgi --strategy hup"),
]
LOAD = "--instances 2 --rate 80 --duration 25 --compare"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    options = parser.parse_args()
    lines, met = [], True
    with tempfile.TemporaryDirectory(prefix="zerodown-servers-") as scratch:
        for number, row in enumerate(ROWS):
            # A later --duration wins over the default one.
            args = shlex.split(f"{LOAD} {row.options}")
            with_zerodown, without = rehearse(args, Path(scratch) / str(number))
            met &= with_zerodown["failed"] == 0
            cells = [
                f"{run['failed']} of {run['requests']:,}"
                + (f" ({kinds})" if (kinds := _kinds(run)) else "")
                for run in (with_zerodown, without)
            ]
            line = f"| {row.server} | {row.what} | {row.how} | {cells[0]} | {cells[1]} |"
            lines.append(line)
            print(line, flush=True)
    return table_report(
        "servers",
        "hypercorn, granian and uWSGI (`benchmarks/servers.py`)",
        [
            "`zerodown rehearse --compare` of the Starlette example (ASGI) or the Flask example",
            "(WSGI): two instances behind HAProxy, 80 requests/s for 25 s (40 s for granian's",
            "reload, which overlaps each old worker with its new one for 3.5 s), failed",
            "requests with zerodown and without (`ZERODOWN_DISABLED=1`). Target: 0 failed with",
            "zerodown in every row. [Servers](servers.md) explains each mechanism.",
        ],
        ["server", "what", "zerodown's window", "failed with zerodown", "without"],
        lines,
        write=options.write,
        met=met,
    )


def _kinds(run: dict[str, object]) -> str:
    kinds = run["failures_by_kind"]
    assert isinstance(kinds, dict)
    return ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))


if __name__ == "__main__":
    sys.exit(main())
