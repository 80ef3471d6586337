"""What the ASGI middleware costs, against the same app without it, in the same run.

    python -m benchmarks.middleware [--write]

1. In-process: the wrapped and the bare hello-world app called directly in a loop (no
   server, no sockets), back to back in many short rounds; the median of the per-round
   differences is the middleware's own cost.
   Target: <= 2 us per request.
2. Under uvicorn (httptools, one process, access log off): wrk with 1 thread and 32
   keep-alive connections against the bare app and the wrapped app, alternating, three
   rounds; the ratio of the medians. Target: >= 97% of the bare app's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import write_section
from benchmarks.hello_apps import bare, wrapped
from zerodown._procs import LOOPBACK, free_port, start_process, wait_for_http
from zerodown._types import ASGIApp, Message

REPO = Path(__file__).resolve().parents[1]
CALLS = 20_000
ROUNDS = 41


async def _per_request_seconds(app: ASGIApp, calls: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": (LOOPBACK, 1),
        "server": (LOOPBACK, 2),
    }
    request: Message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Message:
        return request

    async def send(message: Message) -> None:
        return None

    started = time.perf_counter()
    for _ in range(calls):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / calls


def in_process() -> tuple[float, float, float]:
    """Median seconds per request of the bare and the wrapped app, and of their difference.

    Each round measures both apps back to back (in alternating order) and keeps the
    difference: on a shared virtual machine the speed drifts between rounds by more than
    the middleware costs, and pairing cancels the drift.
    """
    wrapped.lifecycle.mark_ready()
    bare_times, wrapped_times, differences = [], [], []
    for round_number in range(ROUNDS):
        order = [(bare, bare_times), (wrapped, wrapped_times)]
        for app, times in order if round_number % 2 else reversed(order):
            times.append(asyncio.run(_per_request_seconds(app, CALLS)))
        differences.append(wrapped_times[-1] - bare_times[-1])
    return (
        statistics.median(bare_times),
        statistics.median(wrapped_times),
        statistics.median(differences),
    )


def _wrk_rps(url: str, seconds: int) -> float:
    output = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    return float(match.group(1))


def under_uvicorn(seconds: int, rounds: int) -> tuple[float, float]:
    """Median requests/s of the bare and the wrapped app."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="zerodown-bench-"))
    rates: dict[str, list[float]] = {"bare": [], "wrapped": []}
    for round_number in range(rounds):
        for name in ("bare", "wrapped"):
            port = free_port()
            argv = [sys.executable, "-m", "uvicorn", f"benchmarks.hello_apps:{name}"]
            argv += ["--host", LOOPBACK, "--port", str(port), "--no-access-log"]
            argv += ["--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]
            server = start_process(
                name, argv, log_path=workdir / f"{name}-{round_number}.log", cwd=REPO
            )
            try:
                wait_for_http(f"http://{LOOPBACK}:{port}/", timeout=20, process=server)
                _wrk_rps(f"http://{LOOPBACK}:{port}/", 1)  # warm-up
                rates[name].append(_wrk_rps(f"http://{LOOPBACK}:{port}/", seconds))
            finally:
                server.stop(timeout=10)
    return statistics.median(rates["bare"]), statistics.median(rates["wrapped"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    bare_s, wrapped_s, overhead_s = in_process()
    overhead_us = overhead_s * 1e6
    bare_rps, wrapped_rps = under_uvicorn(args.seconds, args.rounds)
    ratio = wrapped_rps / bare_rps
    in_process_ok = overhead_us <= 2.0
    throughput_ok = ratio >= 0.97
    verdict = {True: "met", False: "MISSED"}
    body = f"""## ASGI middleware overhead (`benchmarks/middleware.py`)

Hello-world Starlette app, bare and wrapped by `zerodown.ASGIMiddleware`.

| measure | bare app | with zerodown | result | target |
|---|---|---|---|---|
| in-process, per request (median of {ROUNDS} paired rounds x {CALLS:,} calls) \
| {bare_s * 1e6:.2f} us | {wrapped_s * 1e6:.2f} us | +{overhead_us:.2f} us \
| <= 2 us {verdict[in_process_ok]} |
| uvicorn + httptools + uvloop, wrk -t1 -c32, median of {args.rounds} x {args.seconds} s \
| {bare_rps:,.0f} req/s | {wrapped_rps:,.0f} req/s | {ratio:.1%} of bare \
| >= 97% {verdict[throughput_ok]} |

Method: the in-process loop calls the ASGI callable directly with a prepared scope and
no-op receive/send. Each round times both apps back to back, in alternating order; the
result is the median of the per-round differences (the cost of the probe lookup, the
in-flight count and the `connection: close` send wrapper). Pairing matters here: on this
shared virtual machine the speed of whole rounds drifts by more than the middleware costs.
Under uvicorn, each app runs alone in one process while wrk (one thread, 32 keep-alive
connections) drives it; a 1 s warm-up precedes each measured run; rounds alternate the two
apps so drift on the machine hits both alike.
"""
    print(body)
    if args.write:
        write_section("middleware", body)
    return 0 if in_process_ok and throughput_ok else 1


if __name__ == "__main__":
    sys.exit(main())
