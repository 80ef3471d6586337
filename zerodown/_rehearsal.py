"""Rehearsing a rolling deploy of an ASGI app on this machine, under load, behind HAProxy."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._haproxy import Backend, HAProxy, HealthCheck, start_haproxy
from ._load import LoadPlan, LoadResult, RequestRecord, read_records, start_load
from ._procs import (
    LOOPBACK,
    ManagedProcess,
    child_environment,
    free_port,
    start_process,
    stop_all,
    wait_for_http,
)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RehearsalPlan:
    app: str
    instances: int = 2
    rate: int = 150
    duration: float = 30.0
    slow_path: str = "/slow?ms=300"
    slow_fraction: float = 0.2
    shutdown_delay: float = 4.0
    drain_timeout: float = 10.0
    #: Run the app with ``ZERODOWN_DISABLED=1`` and a health check that always passes: the
    #: baseline of an app without zerodown.
    disabled: bool = False
    env: dict[str, str] = field(default_factory=dict)
    #: Share of requests that add to a session cart (the app serves POST /cart/add).
    cart_fraction: float = 0.0


@dataclass(frozen=True, slots=True)
class RehearsalReport:
    plan: RehearsalPlan
    result: LoadResult
    deploy_started: float
    deploy_ended: float

    @property
    def deploy_duration(self) -> float:
        return self.deploy_ended - self.deploy_started

    def _during(self, record: RequestRecord) -> bool:
        return record.started < self.deploy_ended and record.ended > self.deploy_started

    def latency(self, *, during_deploy: bool) -> dict[str, float]:
        """p50/p95/p99/max in ms of the answered requests, in or out of the deploy window."""
        chosen = sorted(
            record.latency * 1000
            for record in self.result.records
            if not record.failed and self._during(record) == during_deploy
        )
        if not chosen:
            return {}
        return {name: _percentile(chosen, q) for name, q in _QUANTILES}

    def render(self) -> str:
        label = "without zerodown (ZERODOWN_DISABLED=1)" if self.plan.disabled else "with zerodown"
        lines = [
            f"rolling deploy of {self.plan.app}, {self.plan.instances} instances, {label}",
            f"  {self.result.describe()}",
            f"  deploy took {self.deploy_duration:.1f}s",
        ]
        for name, during in (("steady", False), ("during deploy", True)):
            latency = self.latency(during_deploy=during)
            shown = "  ".join(f"{key} {value:.0f}ms" for key, value in latency.items())
            lines.append(f"  latency {name}: {shown or 'no requests'}")
        return "\n".join(lines)


_QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def _percentile(ordered: Sequence[float], quantile: float) -> float:
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


class _Fleet:
    """The app's instances on fixed ports, so the proxy's config never changes."""

    def __init__(self, plan: RehearsalPlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.ports = [free_port() for _ in range(plan.instances)]
        self.processes: list[ManagedProcess | None] = [None] * plan.instances
        self._generation = 0
        self.health_path = "/" if plan.disabled else "/readyz"

    def _environment(self) -> dict[str, str]:
        settings = {
            "ZERODOWN_SHUTDOWN_DELAY": str(self.plan.shutdown_delay),
            "ZERODOWN_DRAIN_TIMEOUT": str(self.plan.drain_timeout),
        }
        if self.plan.disabled:
            settings["ZERODOWN_DISABLED"] = "1"
        return child_environment(Path.cwd(), {**settings, **self.plan.env})

    def start(self, index: int) -> ManagedProcess:
        self._generation += 1
        port = self.ports[index]
        argv = [sys.executable, "-m", "uvicorn", self.plan.app, "--host", LOOPBACK]
        argv += ["--port", str(port), "--timeout-keep-alive", "75"]
        argv += ["--timeout-graceful-shutdown", str(int(self.plan.drain_timeout))]
        log = self.workdir / f"instance{index}-gen{self._generation}.log"
        process = start_process(
            f"instance {index}", argv, log_path=log, env=self._environment(), cwd=Path.cwd()
        )
        self.processes[index] = process
        wait_for_http(f"http://{LOOPBACK}:{port}{self.health_path}", timeout=30, process=process)
        return process

    def stop(self, index: int, timeout: float) -> None:
        process = self.processes[index]
        if process is not None:
            process.stop(signal.SIGTERM, timeout=timeout)

    def stop_all(self) -> None:
        stop_all(self.processes)


def rehearse_rolling(plan: RehearsalPlan, workdir: Path, progress: Progress) -> RehearsalReport:
    """Start the fleet and the proxy, load them, replace every instance in turn, report."""
    fleet = _Fleet(plan, workdir)
    proxy: HAProxy | None = None
    try:
        for index in range(plan.instances):
            fleet.start(index)
        backends = [Backend(f"s{i}", port) for i, port in enumerate(fleet.ports)]
        proxy = start_haproxy(
            backends, workdir=workdir / "haproxy", check=HealthCheck(path=fleet.health_path)
        )
        up = {backend.name: "UP" for backend in backends}
        proxy.wait_for_states(up)
        load = start_load(
            LoadPlan(
                proxy.url,
                rate=plan.rate,
                duration=plan.duration,
                slow_path=plan.slow_path,
                slow_fraction=plan.slow_fraction,
                cart_fraction=plan.cart_fraction,
            ),
            workdir=workdir / "k6",
        )
        started = time.monotonic()
        watcher = _Watcher(load.records_path, progress, started)
        watcher.start()
        try:
            steady = min(5.0, plan.duration / 5)
            time.sleep(steady)
            deploy_started = time.time()
            for index in range(plan.instances):
                progress(f"stopping instance {index} (SIGTERM)")
                fleet.stop(index, timeout=plan.shutdown_delay + plan.drain_timeout + 10)
                progress(f"starting its replacement on port {fleet.ports[index]}")
                fleet.start(index)
                proxy.wait_for_states(up, timeout=30)
                progress(f"instance {index} replaced and back in the proxy")
            deploy_ended = time.time()
            result = load.result(timeout=plan.duration + 60)
        finally:
            watcher.stop()
            if load.process.returncode is None:
                load.process.stop(signal.SIGINT)
        return RehearsalReport(plan, result, deploy_started, deploy_ended)
    finally:
        fleet.stop_all()
        if proxy is not None:
            proxy.process.stop(signal.SIGINT)


class _Watcher(threading.Thread):
    """Reports requests and failures so far, every second, from k6's record file."""

    def __init__(self, records: Path, progress: Progress, started: float) -> None:
        super().__init__(daemon=True)
        self._records = records
        self._progress = progress
        self._load_started = started
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(1.0):
            records = read_records(self._records)
            failed = sum(record.failed for record in records)
            elapsed = time.monotonic() - self._load_started
            self._progress(f"t={elapsed:4.0f}s  requests {len(records):6d}  failed {failed:4d}")

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=2)
