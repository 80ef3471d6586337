"""SIGTERM to one of two uvicorn instances behind HAProxy, under open-loop load."""

from __future__ import annotations

import signal
import time

import pytest

from tests.bed import LoadPlan, ProcessGroup, ProxyCheck, in_flight_at
from zerodown._cli.rehearse.k6 import LoadResult

RATE = 120  # requests/s, 20% of them 300 ms slow
DURATION = 10.0
TERM_AT = 3.0
#: HAProxy needs inter 1s x fall 2, plus up to one interval, to mark a server down.
SHUTDOWN_DELAY = 4.0


def rotate_one_instance(procs: ProcessGroup, *, disabled: bool) -> tuple[LoadResult, float]:
    env = {"ZERODOWN_SHUTDOWN_DELAY": str(SHUTDOWN_DELAY), "ZERODOWN_DRAIN_TIMEOUT": "10"}
    if disabled:
        env["ZERODOWN_DISABLED"] = "1"
    # Without zerodown the app has no probes; its health check is the usual one that
    # answers 200 whatever the process is doing.
    health = "/" if disabled else "/readyz"
    instances = [
        procs.uvicorn(
            "examples.starlette_app:app",
            env=env,
            args=["--timeout-graceful-shutdown", "10"],
            ready_path=health,
        )
        for _ in range(2)
    ]
    proxy = procs.haproxy(instances, check=ProxyCheck(path=health))
    load = procs.load(LoadPlan(proxy.url, rate=RATE, duration=DURATION, slow_path="/slow?ms=300"))
    time.sleep(TERM_AT)
    term_at = time.time()
    instances[0].process.send_signal(signal.SIGTERM)
    result = load.result(timeout=DURATION + 30)
    assert instances[0].process.wait(timeout=20) is not None, "the instance did not exit"
    return result, term_at


@pytest.mark.e2e
def test_zero_failed_requests_when_an_instance_is_stopped(procs: ProcessGroup) -> None:
    result, term_at = rotate_one_instance(procs, disabled=False)
    assert len(result.records) >= RATE * DURATION * 0.9, result.describe()
    assert result.failed == [], result.describe()
    in_flight = [r for r in in_flight_at(result, term_at) if r.path.startswith("/slow")]
    assert in_flight, "no slow request was in flight at SIGTERM; the scenario proves nothing"
    assert all(record.status == 200 for record in in_flight)


@pytest.mark.e2e
def test_the_same_rotation_without_zerodown_fails_requests(procs: ProcessGroup) -> None:
    result, _ = rotate_one_instance(procs, disabled=True)
    assert result.failed, (
        f"the baseline must show failures to make the test meaningful: {result.describe()}"
    )
