"""What a session costs in Redis calls and throughput, against starsessions, in one run.

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.sessions [--write]

Both apps (``benchmarks/session_apps.py``) serve ``GET /`` reading one key of the session
and ``POST /login`` writing it, on one redis-server started for the run.

1. Redis calls per request, as the server counts them (``INFO commandstats``), for a request
   without a cookie, one that reads the session, and one that writes it.
2. Throughput of the reading endpoint under uvicorn (httptools, uvloop, one process, access
   log off), wrk with 1 thread and 32 keep-alive connections sending the session cookie,
   the apps in alternating order. Target: zerodown >= 1.2x starsessions.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import redis

from benchmarks._report import report
from benchmarks._serve import arguments, measured_rps, start_uvicorn
from zerodown._cli.procs import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    start_process,
    wait_for_port,
)

APPS = ("zerodown", "starsessions")
SAMPLE = 200


def start_redis(workdir: Path) -> tuple[ManagedProcess, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: apt-get install redis-server")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--dir", str(workdir)]
    server = start_process("redis", argv, log_path=workdir / "redis.log", cwd=workdir)
    wait_for_port(server, port)
    return server, f"redis://{LOOPBACK}:{port}/0"


def start_app(name: str, redis_url: str, log: Path) -> tuple[ManagedProcess, str]:
    env = {"REDIS_URL": redis_url, "PATH": str(Path(sys.executable).parent)}
    return start_uvicorn(f"benchmarks.session_apps:{name}_app", log, env=env)


def calls_per_request(url: str, redis_url: str) -> dict[str, dict[str, float]]:
    """Server-side command counts per request: no cookie, reading, writing."""
    counter = redis.Redis.from_url(redis_url)
    with httpx.Client(base_url=url) as http:
        http.post("/login")  # a session to read, and the write script loaded
        cookie = http.cookies["session"]
        http.get("/")  # the read script loaded
        found: dict[str, dict[str, float]] = {}
        for label, method, path, cookies in (
            ("no cookie", "GET", "/", None),
            ("read", "GET", "/", cookie),
            ("write", "POST", "/login", cookie),
        ):
            counter.config_resetstat()
            for _ in range(SAMPLE):
                headers = {"cookie": f"session={cookies}"} if cookies else {}
                http.cookies.clear()
                http.request(method, path, headers=headers).raise_for_status()
            stats = counter.info("commandstats")
            found[label] = {
                name.removeprefix("cmdstat_"): int(values["calls"]) / SAMPLE
                for name, values in stats.items()
                if not name.startswith(("cmdstat_config", "cmdstat_info"))
            }
        return found


def main() -> int:
    args = arguments(rounds=6)
    workdir = Path(tempfile.mkdtemp(prefix="zerodown-session-bench-"))
    redis_server, redis_url = start_redis(workdir)
    calls: dict[str, dict[str, dict[str, float]]] = {}
    rates: dict[str, list[float]] = {name: [] for name in APPS}
    try:
        for name in APPS:
            server, url = start_app(name, redis_url, workdir / f"{name}-calls.log")
            try:
                calls[name] = calls_per_request(url, redis_url)
            finally:
                server.stop(timeout=10)
        for round_number in range(args.rounds):
            order = APPS if round_number % 2 == 0 else tuple(reversed(APPS))
            for name in order:
                log = workdir / f"{name}-{round_number}.log"
                server, url = start_app(name, redis_url, log)
                try:
                    cookie = httpx.post(f"{url}/login").cookies["session"]
                    header = [f"Cookie: session={cookie}"]
                    rates[name].append(measured_rps(f"{url}/", args.seconds, header))
                finally:
                    server.stop(timeout=10)
    finally:
        redis_server.stop(timeout=10)

    medians = {name: statistics.median(rates[name]) for name in APPS}
    ratio = medians["zerodown"] / medians["starsessions"]
    ratio_ok = ratio >= 1.2

    def shown(counts: dict[str, float]) -> str:
        return ", ".join(f"{n:g} {name.upper()}" for name, n in sorted(counts.items())) or "none"

    rows = "\n".join(
        f"| {name} | {shown(calls[name]['no cookie'])} | {shown(calls[name]['read'])} "
        f"| {shown(calls[name]['write'])} | {medians[name]:,.0f} req/s |"
        for name in APPS
    )
    body = f"""## Sessions (`benchmarks/sessions.py`)

A Starlette endpoint reading one session key, and one writing it, with zerodown's
`SessionMiddleware` + `RedisStore` and with starsessions 2.2.1 (`RedisStore`,
`SessionAutoloadMiddleware`, rolling expiry like zerodown's), on one redis-server.

| sessions | Redis commands: no cookie | reading | writing | reading, req/s (1) |
|---|---|---|---|---|
{rows}

zerodown makes one call to read (a script: HGETALL, and EXPIRE to slide the expiry) and one
more to write only the changed keys (a script: EXISTS, HGETALL to hold `max_size`, HSET,
EXPIRE); the commands a script
runs inside Redis are counted with it. starsessions rewrites the whole session on every
request that loaded it, reads included.

(1) Under uvicorn, the median of {args.rounds} runs of {args.seconds} s.

Target: >= 1.2x starsessions' throughput: {ratio:.2f}x, {"met" if ratio_ok else "MISSED"}.

Method: commands counted with `CONFIG RESETSTAT` and `INFO commandstats` over {SAMPLE} requests
of each kind. Throughput: each app alone in one uvicorn process (httptools, uvloop, access
log off), wrk -t1 -c32 sending one session's cookie, a 1 s warm-up before each measured
run, the apps alternating which goes first in a round.
"""
    return report("sessions", body, write=args.write, met=ratio_ok)


if __name__ == "__main__":
    sys.exit(main())
