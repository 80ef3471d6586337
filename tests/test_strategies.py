"""The deploy procedures the strategies page gives, run as written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bed import REPO, LoadPlan, ProcessGroup, find_nginx
from zerodown._cli.procs import LOOPBACK, free_port, wait_for_http
from zerodown._cli.rehearse.k6 import RequestRecord
from zerodown._cli.rehearse.report import Thresholds

BLUEGREEN = REPO / "examples" / "bluegreen"


@pytest.mark.e2e
def test_the_nginx_blue_green_switch_fails_no_request(procs: ProcessGroup, tmp_path: Path) -> None:
    settings = {"ZERODOWN_SHUTDOWN_DELAY": "4", "ZERODOWN_DRAIN_TIMEOUT": "10"}
    blue, green = (
        procs.uvicorn(
            "examples.starlette_app:app",
            env={**settings, "ZERODOWN_RELEASE": release},
            args=["--timeout-keep-alive", "75"],
            ready_path="/readyz",
        )
        for release in ("blue", "green")
    )
    port = free_port()
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    config = prefix / "nginx.conf"
    config.write_text(
        (BLUEGREEN / "nginx.conf").read_text().replace("127.0.0.1:8080", f"{LOOPBACK}:{port}")
    )
    upstream = prefix / "upstream.inc"
    upstream.write_text(f"server {LOOPBACK}:{blue.port};\n")
    nginx = [find_nginx(), "-p", str(prefix), "-c", str(config)]
    # As root, nginx's workers would run as nobody, who cannot read this test's files.
    foreground = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    server = procs.start("nginx", [*nginx, "-g", foreground])
    wait_for_http(f"http://{LOOPBACK}:{port}/", timeout=10, process=server)

    load = procs.load(
        LoadPlan(f"http://{LOOPBACK}:{port}", rate=120, duration=10, slow_path="/slow?ms=300")
    )
    time.sleep(3)
    bin_dir = str(Path(sys.executable).parent)
    switch = subprocess.run(
        ["bash", str(BLUEGREEN / "switch.sh"), f"{LOOPBACK}:{green.port}"],
        env={
            **os.environ,
            "UPSTREAM_FILE": str(upstream),
            "NGINX": " ".join(nginx),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert switch.returncode == 0, switch.stdout + switch.stderr
    assert "ready:" in switch.stdout
    blue.process.send_signal(signal.SIGTERM)
    result = load.result(timeout=40)
    assert blue.process.wait(timeout=20) is not None, "blue did not exit"

    assert len(result.records) >= 1000, result.describe()
    assert result.failed == [], result.describe()
    for instance in (blue, green):
        assert '"GET / HTTP/1.1" 200' in instance.process.log_text(), "both releases served"


def test_a_canary_is_not_rolled_back_for_a_p99_that_doubled_within_the_floor() -> None:
    # Measured on a loaded CI machine: steady p99 15 ms, the canary's 32 ms.
    def answered(seconds: float) -> list[RequestRecord]:
        return [RequestRecord(0.0, seconds, "/", 200, "", "v2-0") for _ in range(100)]

    thresholds = Thresholds()
    assert thresholds.canary_problem(answered(0.032), steady_p99=0.015) is None
    assert "above the steady p99 15ms" in (thresholds.canary_problem(answered(0.2), 0.015) or "")
