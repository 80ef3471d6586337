"""Running ``zerodown rehearse`` from a benchmark: its runs, as the JSON report has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ZERODOWN = str(Path(sys.executable).with_name("zerodown"))


def rehearse(
    args: Sequence[str], workdir: Path, env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """``zerodown rehearse ARGS`` (quiet, the JSON on standard output): every run of its
    report, each with the command's ``exit`` status; raises when it could not run."""
    done = subprocess.run(
        [ZERODOWN, "rehearse", *args, "--json", "-", "--quiet", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode == 2:
        raise RuntimeError(f"the rehearsal could not run:\n{done.stderr}")
    runs: list[dict[str, Any]] = json.loads(done.stdout)["runs"]
    for run in runs:
        run["exit"] = done.returncode
    return runs
