"""What the throughput benchmarks share: one app alone under uvicorn, and wrk against it."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from zerodown._cli.procs import LOOPBACK, ManagedProcess, free_port, start_process, wait_for_http

REPO = Path(__file__).resolve().parents[1]


def start_uvicorn(
    app: str,
    log_path: Path,
    *,
    ready_path: str = "/",
    env: Mapping[str, str] | None = None,
) -> tuple[ManagedProcess, str]:
    """``app`` alone in one uvicorn process (httptools, uvloop, no access log); its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", LOOPBACK, "--port", str(port)]
    argv += ["--no-access-log", "--log-level", "warning", "--http", "httptools"]
    argv += ["--loop", "uvloop"]
    server = start_process(app, argv, log_path=log_path, env=env, cwd=REPO)
    url = f"http://{LOOPBACK}:{port}"
    wait_for_http(f"{url}{ready_path}", timeout=20, process=server)
    return server, url


def wrk_rps(url: str, seconds: int, headers: Sequence[str] = ()) -> float:
    """Requests/s wrk measures with 1 thread and 32 keep-alive connections."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    extra = [argument for header in headers for argument in ("-H", header)]
    output = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", *extra, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    return float(match.group(1))


def measured_rps(url: str, seconds: int, headers: Sequence[str] = ()) -> float:
    """wrk's rate after a 1 s warm-up."""
    wrk_rps(url, 1, headers)
    return wrk_rps(url, seconds, headers)


def arguments(*, rounds: int) -> argparse.Namespace:
    """``--write`` (update docs/benchmarks.md), ``--seconds`` per run, ``--rounds``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=rounds, help="an even number")
    return parser.parse_args()
