"""Writing a benchmark's section into docs/benchmarks.md, between its own markers."""

from __future__ import annotations

import platform
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section is written by the script it names (`python -m benchmarks.NAME --write`), which
measures zerodown against a baseline **in the same run** on the same machine and reports the
ratio. Absolute numbers depend on the machine; the ratios are what the targets are about.
Tests never assert speed; these scripts do, and exit 1 when a target is missed.
"""


def machine() -> str:
    return f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    text = DOC.read_text() if DOC.exists() else HEADER
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.rstrip()}\n\n_Last run: {stamp}, {machine()}._\n{end}"
    pattern = re.compile(rf"{re.escape(start)}.*?{re.escape(end)}", re.DOTALL)
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{section}\n"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def report(name: str, body: str, *, write: bool, met: bool) -> int:
    """Print a benchmark's section, write it into the docs if asked; the exit status."""
    print(body)
    if write:
        write_section(name, body)
    return 0 if met else 1


def table_report(
    name: str,
    heading: str,
    method: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[str],
    *,
    write: bool,
    met: bool,
) -> int:
    """A benchmark's section of one table: the heading, the method (lines of prose), the
    table, whether the target was met; printed, and written into the docs if asked."""
    body = "\n".join(
        [
            f"## {heading}",
            "",
            *method,
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *rows,
            "",
            f"Target {'met' if met else 'MISSED'}.",
        ]
    )
    return report(name, body, write=write, met=met)
