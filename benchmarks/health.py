"""What a readiness probe served from the cache costs, against fastapi-health, in one run.

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.health [--write]

Both apps answer ``GET /readyz`` with one in-memory check (``benchmarks/health_apps.py``):
zerodown reads the check's cached result, fastapi-health calls the check (it has no cache;
the check costs nothing, so the two do the same work).

1. In-process: each app's ASGI callable called directly, one probe at a time, in
   alternating blocks; every call timed. Target: zerodown's p99 <= 1 ms.
2. Under uvicorn (httptools, uvloop, one process, access log off): wrk with 1 thread and
   32 keep-alive connections, the apps in alternating order. Target: zerodown >= 5,000
   probes/s.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._asgi import REQUEST, get_scope
from benchmarks._report import report
from benchmarks._serve import arguments, measured_rps, start_uvicorn
from benchmarks.health_apps import fastapi_health_app, registry, zerodown_app
from zerodown._types import ASGIApp, Message

APPS: dict[str, ASGIApp] = {"zerodown": zerodown_app, "fastapi-health": fastapi_health_app}
CALLS_PER_BLOCK = 2_000
BLOCKS = 20


async def _timed_probes(app: ASGIApp, calls: int) -> list[float]:
    scope = get_scope("/readyz", "10.0.0.1")
    request = REQUEST
    statuses: list[int] = []

    async def receive() -> Message:
        return request

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        await app(dict(scope), receive, send)
        seconds.append(time.perf_counter() - started)
    if set(statuses) != {200}:
        raise RuntimeError(f"the probe did not pass: {set(statuses)}")
    return seconds


def in_process() -> dict[str, list[float]]:
    zerodown_app.lifecycle.mark_ready()
    timings: dict[str, list[float]] = {name: [] for name in APPS}

    async def measure() -> None:
        registry.start(asyncio.get_running_loop())
        for block in range(BLOCKS):
            names = list(APPS) if block % 2 == 0 else list(reversed(APPS))
            for name in names:
                timings[name] += await _timed_probes(APPS[name], CALLS_PER_BLOCK)

    asyncio.run(measure())
    return timings


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def under_uvicorn(seconds: int, rounds: int) -> dict[str, list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix="zerodown-health-bench-"))
    rates: dict[str, list[float]] = {name: [] for name in APPS}
    for round_number in range(rounds):
        names = list(APPS) if round_number % 2 == 0 else list(reversed(APPS))
        for name in names:
            attribute = name.replace("-", "_") + "_app"
            log = workdir / f"{attribute}-{round_number}.log"
            app = f"benchmarks.health_apps:{attribute}"
            server, url = start_uvicorn(app, log, ready_path="/readyz")
            try:
                rates[name].append(measured_rps(f"{url}/readyz", seconds))
            finally:
                server.stop(timeout=10)
    return rates


def main() -> int:
    args = arguments(rounds=6)

    timings = in_process()
    rates = under_uvicorn(args.seconds, args.rounds)
    ours_p99 = _percentile(timings["zerodown"], 0.99)
    ours_rate = statistics.median(rates["zerodown"])
    latency_ok = ours_p99 <= 0.001
    rate_ok = ours_rate >= 5_000
    verdict = {True: "met", False: "MISSED"}
    rows = []
    for name in APPS:
        values = timings[name]
        rows.append(
            f"| {name} | {_percentile(values, 0.5) * 1e6:.1f} us "
            f"| {_percentile(values, 0.99) * 1e6:.1f} us "
            f"| {statistics.median(rates[name]):,.0f} probes/s |"
        )
    table = "\n".join(rows)
    body = f"""## Health probes (`benchmarks/health.py`)

`GET /readyz` with one in-memory check: zerodown (`ASGIMiddleware` on an empty Starlette
app, the check's result cached) and fastapi-health 0.4 (a FastAPI route; it has no cache and
calls the check, which costs nothing, so both do the same work).

| app | in-process p50 | in-process p99 | uvicorn, median of {args.rounds} x {args.seconds} s |
|---|---|---|---|
{table}

Targets: zerodown's in-process p99 <= 1 ms: {ours_p99 * 1e6:.1f} us, {verdict[latency_ok]}; \
>= 5,000 probes/s under uvicorn: {ours_rate:,.0f}, {verdict[rate_ok]}.

Method: in-process, each app's ASGI callable is called directly with a prepared scope and
no-op receive/send, {BLOCKS} blocks of {CALLS_PER_BLOCK:,} probes per app in alternating
order, every call timed with `perf_counter`. Under uvicorn (httptools, uvloop, access log
off) each app runs alone in one process and wrk drives it with 1 thread and 32 keep-alive
connections; a 1 s warm-up precedes each measured wrk run, and the apps alternate which goes
first in a round.
"""
    return report("health", body, write=args.write, met=latency_ok and rate_ok)


if __name__ == "__main__":
    sys.exit(main())
