"""What the ASGI middleware costs, against the same app without it, in the same run.

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.middleware [--write]

1. In-process: the bare, a do-nothing and the wrapped hello-world app called directly (no
   server, no sockets) in interleaved blocks; the median of each block's difference to the
   bare app's block beside it is the middleware's own cost. Target: <= 2 us per request.
2. Under uvicorn (httptools, one process, access log off): wrk with 1 thread and 32
   keep-alive connections against the three apps in mirrored rounds; the median of the
   blocks' ratios, with the do-nothing middleware as the control for wrk's noise.
3. Under the same load, py-spy's share of the wrapped server's CPU samples in zerodown's
   frames, which judges the throughput target: >= 97% of the bare app's throughput.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._asgi import REQUEST, get_scope
from benchmarks._report import report
from benchmarks._serve import arguments, measured_rps, start_uvicorn
from benchmarks.hello_apps import bare, pass_through, wrapped
from zerodown._cli.procs import ManagedProcess, find_tool
from zerodown._types import ASGIApp, Message

BLOCKS = 400
CALLS_PER_BLOCK = 200
RUNS = 5


def in_process() -> dict[str, list[float]]:
    """Per run: the median seconds per request of each app, and of each app's difference
    to the bare one.

    One event loop runs blocks of calls to each app in turn (the order rotating by block),
    with the garbage collector off while a block is timed, as ``timeit`` does, and a full
    collection between rounds of blocks. Each block's difference to the bare app's block
    just before or after it cancels the drift of this shared machine's speed, which is
    larger than the middleware's cost. Whole runs still differ with the machine's state,
    so there are several.
    """
    apps: dict[str, ASGIApp] = {"bare": bare, "pass_through": pass_through, "wrapped": wrapped}
    runs: dict[str, list[float]] = {}
    for _ in range(RUNS):
        times = asyncio.run(_timed_blocks(apps))
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name in ("pass_through", "wrapped"):
            differences = [a - b for a, b in zip(times[name], times["bare"], strict=True)]
            medians[f"{name}_added"] = statistics.median(differences)
        for name, value in medians.items():
            runs.setdefault(name, []).append(value)
    return runs


async def _timed_blocks(apps: dict[str, ASGIApp]) -> dict[str, list[float]]:
    scope = get_scope("/")
    request = REQUEST

    async def receive() -> Message:
        return request

    async def send(message: Message) -> None:
        return None

    async def timed(app: ASGIApp, calls: int) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await app(dict(scope), receive, send)
        return (time.perf_counter() - started) / calls

    for app in apps.values():  # warm up; the wrapped app's first request starts it serving
        await timed(app, 1_000)
    names = list(apps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for block in range(BLOCKS):
        if block % 20 == 0:
            gc.enable()
            gc.collect()
        gc.disable()
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(await timed(apps[name], CALLS_PER_BLOCK))
    gc.enable()
    return times


def under_uvicorn(
    names: list[str], seconds: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median requests/s of each app, and each app's median ratio to the first one."""
    workdir = Path(tempfile.mkdtemp(prefix="zerodown-bench-"))
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number // 2 % len(names)
        order = names[shift:] + names[:shift]
        if round_number % 2:
            order.reverse()
        for name in order:
            rates[name].append(_serve_and_measure(name, seconds, workdir, round_number))
    # Rounds 2k and 2k+1 measure the apps in mirrored orders and form a block: the position
    # in a round (the first server measured runs faster here) and linear drift cancel in it.
    baseline = rates[names[0]]
    ratios = {
        name: statistics.median(
            (rates[name][i] + rates[name][i + 1]) / (baseline[i] + baseline[i + 1])
            for i in range(0, rounds - 1, 2)
        )
        for name in names[1:]
    }
    return {name: statistics.median(rates[name]) for name in names}, ratios


def _start_hello(name: str, log_path: Path) -> tuple[ManagedProcess, str]:
    server, url = start_uvicorn(f"benchmarks.hello_apps:{name}", log_path)
    return server, f"{url}/"


def _serve_and_measure(name: str, seconds: int, workdir: Path, round_number: int) -> float:
    server, url = _start_hello(name, workdir / f"{name}-{round_number}.log")
    try:
        return measured_rps(url, seconds)
    finally:
        server.stop(timeout=10)


def cpu_share_under_load(seconds: int) -> tuple[float, int]:
    """The share of the wrapped server's CPU samples spent in zerodown's own frames.

    py-spy samples the uvicorn process 200 times a second while wrk drives it; a sample
    counts when its innermost frame is zerodown code. Unlike the throughput ratio, this
    does not depend on the machine being equally fast for two separate runs.
    """
    py_spy = find_tool("py-spy", "py-spy is missing: pip install -r benchmarks/requirements.txt")
    workdir = Path(tempfile.mkdtemp(prefix="zerodown-profile-"))
    server, url = _start_hello("wrapped", workdir / "server.log")
    samples = workdir / "samples.txt"
    try:
        load = subprocess.Popen(
            ["wrk", "-t1", "-c32", f"-d{seconds + 2}s", url], stdout=subprocess.DEVNULL
        )
        time.sleep(1)
        record = [py_spy, "record", "-p", str(server.pid), "-d", str(seconds), "-r", "200"]
        subprocess.run(
            [*record, "-f", "raw", "-o", str(samples)],
            check=True,
            capture_output=True,
        )
        load.wait(timeout=seconds + 30)
    finally:
        server.stop(timeout=10)
    total = own = 0
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        if "zerodown/" in stack.split(";")[-1]:
            own += int(count)
    return own / total, total


def main() -> int:
    args = arguments(rounds=10)

    runs = in_process()
    bare_s, wrapped_s = statistics.median(runs["bare"]), statistics.median(runs["wrapped"])
    added_us = sorted(seconds * 1e6 for seconds in runs["wrapped_added"])
    overhead_us = statistics.median(added_us)
    floor_us = statistics.median(runs["pass_through_added"]) * 1e6
    rates, ratios = under_uvicorn(["bare", "pass_through", "wrapped"], args.seconds, args.rounds)
    share, sample_count = cpu_share_under_load(8)
    implied = 1 - share
    throughput_ok = implied >= 0.97
    in_process_ok = overhead_us <= 2.0
    verdict = {True: "met", False: "MISSED"}
    body = f"""## ASGI middleware overhead (`benchmarks/middleware.py`)

Hello-world Starlette app, bare and wrapped by `zerodown.ASGIMiddleware`.

| measure | bare app | with zerodown | result | target |
|---|---|---|---|---|
| in-process, per request (median of {RUNS} runs of {BLOCKS} interleaved blocks x \
{CALLS_PER_BLOCK} calls; the app columns unpaired) \
| {bare_s * 1e6:.2f} us | {wrapped_s * 1e6:.2f} us \
| +{overhead_us:.2f} us (runs: {", ".join(f"{us:+.2f}" for us in added_us)}) \
| <= 2 us {verdict[in_process_ok]} |
| uvicorn + httptools + uvloop, wrk -t1 -c32, {args.rounds} rounds x {args.seconds} s \
| {rates["bare"]:,.0f} req/s | {rates["wrapped"]:,.0f} req/s \
| {ratios["wrapped"]:.1%} of bare (median of mirrored blocks) | see below |
| the same rounds, a middleware that does nothing (control) | {rates["bare"]:,.0f} req/s \
| {rates["pass_through"]:,.0f} req/s | {ratios["pass_through"]:.1%} of bare | |
| uvicorn + httptools + uvloop under wrk, py-spy at 200 Hz for 8 s ({sample_count:,} samples) \
| | {share:.1%} of CPU in zerodown's frames | {implied:.1%} of bare implied \
| >= 97% {verdict[throughput_ok]} |

The throughput target is judged on the CPU share: on this shared 2-core virtual machine
the ratio of two separate wrk runs swings by more than the target's 3% (the control row
is a middleware that only calls the app, {floor_us / overhead_us:.0%} of zerodown's in-process cost,
in the same rounds; earlier runs measured its block ratios anywhere from 0.88 to 1.23),
while the share of samples in zerodown's own frames is measured within one run.
A CPU-bound server that spends a share `s` of its time in zerodown serves `1 - s` of the
bare app's requests.

For scale, a pure ASGI middleware that does nothing but `await self.app(...)` adds
{floor_us:+.2f} us per request in the same rounds: that is the floor of any middleware layer
on this machine, where one Python call costs about 0.1-0.3 us.

Method: the in-process loop calls the ASGI callable directly with a prepared scope and
no-op receive/send, in one event loop: blocks of {CALLS_PER_BLOCK} calls to each app in turn, the
order rotating by block, the garbage collector off while a block is timed (as `timeit` does).
A run's result is the median of the differences between each block of an app and the bare
app's block beside it (the cost of the probe lookup and the in-flight count); the table
gives the median of {RUNS} runs and each run's result. The two app columns are each app's
own median, unpaired, so their difference is not the result. Pairing matters here: on this shared
virtual machine the speed drifts by more than the middleware costs, and whole runs differ
by a third with the machine's state (the bare app's time per request ranges from about
18 to 33 us between runs on the same day).
Under uvicorn, each app runs alone in one process while wrk (one thread, 32 keep-alive
connections) drives it; a 1 s warm-up precedes each measured run; each round measures the
three apps back to back, the next round in the mirrored order (A-B-C, C-B-A, then rotated),
and two such rounds form a block whose ratio is the sum of an app's rates over the bare
app's. The result is the median of the blocks: on this machine whichever server runs first
in a round is faster, by up to 20%, and the block cancels that and any linear drift.
"""
    return report("middleware", body, write=args.write, met=in_process_ok and throughput_ok)


if __name__ == "__main__":
    sys.exit(main())
