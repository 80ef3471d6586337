"""Rehearsing a deploy of an app on this machine, under load, behind HAProxy.

The app's instances run under the real server (uvicorn, gunicorn or a command of the
user's), HAProxy fronts them with active readiness checks and no retries, k6 sends
open-loop load, and a strategy (rolling, blue-green, canary, gunicorn HUP) replaces the
running release with the new one. Every request's outcome lands in the report.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from ._fleet import Fleet, Instance, NotReady, ServerSpec
from ._haproxy import HAProxy, HealthCheck, start_haproxy
from ._load import LoadPlan, LoadRun, RequestRecord, read_records, start_load
from ._procs import http_status
from ._rehearsal_report import DeployOutcome, RehearsalReport, Thresholds, percentile

Strategy = Literal["rolling", "bluegreen", "canary", "hup"]
STRATEGIES: tuple[Strategy, ...] = ("rolling", "bluegreen", "canary", "hup")
CURRENT, NEW = "v1", "v2"
FULL_WEIGHT = 100


@dataclass(frozen=True, slots=True)
class RehearsalPlan:
    app: str
    #: The release being deployed; the running one (``app``) when None.
    new_app: str | None = None
    server: ServerSpec = field(default_factory=ServerSpec)
    strategy: Strategy = "rolling"
    instances: int = 2
    rate: int = 200
    duration: float = 60.0
    fast_path: str = "/"
    slow_path: str = "/slow?ms=300"
    slow_fraction: float = 0.2
    #: Share of requests that add to a session cart (the app serves POST /cart/add).
    cart_fraction: float = 0.0
    #: Seconds from SIGTERM to SIGKILL, as Kubernetes' terminationGracePeriodSeconds.
    grace: float = 30.0
    shutdown_delay: float = 4.0
    drain_timeout: float = 15.0
    #: Retries on connection errors (0 as kube-proxy; 1 as an nginx ingress).
    retries: int = 0
    #: Run without zerodown (``ZERODOWN_DISABLED=1``), the proxy checking ``fast_path``.
    disabled: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    #: Extra environment of the new release only.
    new_env: Mapping[str, str] = field(default_factory=dict)
    canary_steps: tuple[int, ...] = (10, 50, 100)
    canary_pause: float = 5.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    start_timeout: float = 60.0

    def problems(self) -> list[str]:
        """What makes this plan impossible to run, each with what to change."""
        problems = []
        if self.strategy == "hup" and not self.server.reloads_on_hup:
            problems.append("--strategy hup reloads gunicorn: add --server gunicorn")
        if self.strategy == "hup" and self.new_app not in (None, self.app):
            problems.append("--strategy hup reloads the code on disk; drop --new-app")
        if self.instances < 1:
            problems.append("--instances must be at least 1")
        if not 0 < self.rate <= 5000:
            problems.append("--rate must be between 1 and 5000 requests per second")
        if not 1 <= self.duration <= 3600:
            problems.append("--duration must be between 1 and 3600 seconds")
        if not 0 <= self.slow_fraction <= 1:
            problems.append("--slow-fraction must be between 0 and 1")
        steps = self.canary_steps
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps):
            problems.append("--canary-steps must be percentages ending in 100, e.g. 10,50,100")
        if list(steps) != sorted(set(steps)):
            problems.append("--canary-steps must increase, e.g. 10,50,100")
        if self.server.kind == "command" and "{port}" not in self.server.command:
            problems.append("--command must contain {port}, where the instance listens")
        return problems


class Progress:
    """The rehearsal's timeline: events and a running count of requests, as it happens.

    With ``out`` a terminal, the count is one line rewritten in place; otherwise a line
    every few seconds. ``out=None`` records the events without printing.
    """

    def __init__(self, out: TextIO | None = sys.stdout) -> None:
        self._out = out
        self._live = out is not None and out.isatty()
        self._lock = threading.Lock()
        self._started = time.time()
        self._status = ""
        self.phase = "starting"
        #: (``time.time()``, what happened)
        self.events: list[tuple[float, str]] = []
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None

    def event(self, text: str) -> None:
        now = time.time()
        offset = now - self._started
        with self._lock:
            self.events.append((now, text))
            self._write(f"[{offset:6.1f}s] {text}", keep=True)

    def _write(self, line: str, *, keep: bool) -> None:
        if self._out is None:
            return
        if self._live:
            end = "\n" if keep else ""
            self._out.write(f"\r\033[K  {line}{end}")
            if keep and self._status:
                self._out.write(f"  {self._status}")
        else:
            self._out.write(f"  {line}\n")
        self._out.flush()

    def watch(self, records: Path) -> None:
        """Count requests and failures from k6's record file until :meth:`stop`."""
        every = 1.0 if self._live else 5.0

        def tick() -> None:
            while not self._stopping.wait(every):
                seen = read_records(records)
                failed = sum(record.failed for record in seen)
                offset = time.time() - self._started
                with self._lock:
                    self._status = (
                        f"[{offset:6.1f}s] {self.phase}: {len(seen):,} requests, {failed:,} failed"
                    )
                    self._write(self._status, keep=not self._live)

        self._ticker = threading.Thread(target=tick, name="zerodown-progress", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=6)
            self._ticker = None
        if self._live and self._out is not None:
            self._out.write("\r\033[K")
            self._out.flush()
        self._status = ""
        self._stopping.clear()


class Deployment:
    """What a strategy works with: the fleet, the proxy, the load's records so far."""

    def __init__(
        self, plan: RehearsalPlan, fleet: Fleet, proxy: HAProxy, progress: Progress
    ) -> None:
        self.plan = plan
        self.fleet = fleet
        self.proxy = proxy
        self.progress = progress
        self.outcome = DeployOutcome()
        self.records: Callable[[], list[RequestRecord]] = list
        #: Which backend each instance serves in.
        self.backend_of: dict[str, str] = {}

    def launch(
        self, release: str, number: int, backend: str, weight: int = FULL_WEIGHT
    ) -> Instance:
        """Start an instance, wait until it is ready, then put it behind the proxy."""
        plan = self.plan
        new = release == NEW
        app = (plan.new_app or plan.app) if new else plan.app
        instance = self.fleet.launch(app, release, number, plan.new_env if new else {})
        self.proxy.add_server(backend, instance.name, instance.port, weight)
        self.backend_of[instance.name] = backend
        self.progress.event(f"{instance.name} ready on port {instance.port}, in the proxy")
        return instance

    def retire(self, instances: Sequence[Instance]) -> None:
        """SIGTERM each, wait for the exits within the grace period, take them out."""
        for instance in instances:
            if instance.signalled_at is None:
                self.progress.event(f"SIGTERM to {instance.name} (pid {instance.process.pid})")
                instance.terminate()
        for instance in instances:
            if self.fleet.wait_for_exit(instance, self.plan.grace):
                self.progress.event(f"{instance.name} {_exit_text(instance.process.returncode)}")
            else:
                grace = self.plan.grace
                note = f"{instance.name} did not exit within the {grace:g}s grace period; killed"
                self.outcome.notes.append(note)
                self.progress.event(note)
            self._forget(instance)

    def _forget(self, instance: Instance) -> None:
        """Take an exited instance out of the proxy once the proxy's own checks saw it go.

        Until then the proxy routes to it as a real one would, which is what exposes a
        server that closes its socket before the proxy noticed it leaving.
        """
        check = self.proxy.check
        noticed_within = check.interval * (check.fall + 1) + 1.0
        with contextlib.suppress(TimeoutError):
            self.proxy.wait_for_states({instance.name: "DOWN"}, timeout=noticed_within)
        self.proxy.remove_server(self.backend_of[instance.name], instance.name)

    def wait_for_idle(self, instances: Sequence[Instance]) -> None:
        """Wait (up to the drain timeout) until the proxy has no request at ``instances``."""
        names = {instance.name for instance in instances}
        deadline = time.monotonic() + self.plan.drain_timeout
        while time.monotonic() < deadline:
            stats = self.proxy.server_stats()
            if all(stats.get(name, {}).get("scur", "0") == "0" for name in names):
                return
            time.sleep(0.1)


def deploy_rolling(deployment: Deployment, current: list[Instance]) -> None:
    """One instance at a time: SIGTERM it, start its replacement, wait until it is ready."""
    for number, old in enumerate(current):
        deployment.progress.phase = f"rolling {number + 1}/{len(current)}"
        deployment.progress.event(f"SIGTERM to {old.name} (pid {old.process.pid})")
        old.terminate()
        deployment.launch(NEW, number, deployment.backend_of[old.name])
        deployment.retire([old])


def deploy_bluegreen(deployment: Deployment, current: list[Instance]) -> None:
    """Start green beside blue, switch the proxy to green, retire blue once it is idle."""
    deployment.progress.phase = "starting green"
    for number in range(len(current)):
        deployment.launch(NEW, number, "green")
    deployment.progress.phase = "switching"
    deployment.proxy.route_to("green")
    deployment.progress.event("proxy switched to green")
    deployment.wait_for_idle(current)
    deployment.progress.phase = "retiring blue"
    deployment.retire(current)


def deploy_canary(deployment: Deployment, current: list[Instance]) -> None:
    """Shift traffic to the new release step by step; roll back if it does worse."""
    plan, proxy, progress = deployment.plan, deployment.proxy, deployment.progress
    backend = deployment.backend_of[current[0].name]
    canaries = [deployment.launch(NEW, n, backend, weight=0) for n in range(len(current))]
    steady = deployment.records()
    steady_p99 = percentile(sorted(r.latency for r in steady if not r.failed), 0.99)
    for share in plan.canary_steps:
        progress.phase = f"canary {share}%"
        for instance in current:
            proxy.set_weight(backend, instance.name, FULL_WEIGHT - share)
        for instance in canaries:
            proxy.set_weight(backend, instance.name, share)
        progress.event(f"{share}% of requests to {NEW}")
        step_started = time.time()
        names = {instance.name for instance in canaries}
        problem = None
        # Judged every second, so a bad release is rolled back as soon as it shows.
        while problem is None and time.time() < step_started + plan.canary_pause:
            time.sleep(min(1.0, max(0.0, step_started + plan.canary_pause - time.time())))
            answered = [
                r for r in deployment.records() if r.server in names and r.started >= step_started
            ]
            problem = plan.thresholds.canary_problem(answered, steady_p99)
        if problem is not None:
            deployment.outcome.rolled_back = f"at {share}%: {problem}"
            progress.event(f"rolling back: {problem}")
            for instance in current:
                proxy.set_weight(backend, instance.name, FULL_WEIGHT)
            for instance in canaries:
                proxy.set_weight(backend, instance.name, 0)
            deployment.wait_for_idle(canaries)
            deployment.retire(canaries)
            return
    deployment.wait_for_idle(current)
    deployment.retire(current)


def deploy_hup(deployment: Deployment, current: list[Instance]) -> None:
    """SIGHUP each gunicorn master in turn; wait until its workers are all new and ready."""
    for number, instance in enumerate(current):
        deployment.progress.phase = f"reloading {number + 1}/{len(current)}"
        old_workers = instance.workers()
        deployment.progress.event(f"SIGHUP to {instance.name} (pid {instance.process.pid})")
        instance.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + deployment.plan.start_timeout
        while instance.workers() & old_workers or not instance.workers():
            if time.monotonic() > deadline or instance.process.returncode is not None:
                raise NotReady(
                    f"{instance.name} still runs workers from before the reload after "
                    f"{deployment.plan.start_timeout:g}s; its log ends with:\n"
                    f"{instance.process.log_text()[-3000:]}"
                )
            time.sleep(0.1)
        deployment.fleet.wait_until_ready(instance)
        deployment.progress.event(f"{instance.name} reloaded: every worker is new")


DEPLOYERS: dict[Strategy, Callable[[Deployment, list[Instance]], None]] = {
    "rolling": deploy_rolling,
    "bluegreen": deploy_bluegreen,
    "canary": deploy_canary,
    "hup": deploy_hup,
}


def rehearse(plan: RehearsalPlan, workdir: Path, progress: Progress) -> RehearsalReport:
    """Run the plan's deploy under load and report every request.

    Raises :class:`NotReady` when the running release cannot be started at all; a new
    release that never turns ready is reported as an aborted deploy.
    """
    if plan.disabled:
        # Without zerodown the app has no probes; the usual check is "anything but a 5xx".
        check = HealthCheck(path=plan.fast_path, expect="rstatus ^[234]")
        ready_path = plan.fast_path
    else:
        check = HealthCheck()
        ready_path = check.path
    settings = {
        "ZERODOWN_SHUTDOWN_DELAY": f"{plan.shutdown_delay:g}",
        "ZERODOWN_DRAIN_TIMEOUT": f"{plan.drain_timeout:g}",
        "ZERODOWN_GRACE_PERIOD": f"{plan.grace:g}",
        # HAProxy drops idle server connections after 5 s, before any server's keep-alive.
        "ZERODOWN_PROXY_IDLE_TIMEOUT": "5",
    }
    if plan.disabled:
        settings["ZERODOWN_DISABLED"] = "1"
    fleet = Fleet(
        plan.server,
        workdir / "instances",
        ready_path=ready_path,
        ready_status=(lambda status: status is not None and status < 500)
        if plan.disabled
        else (lambda status: status == 200),
        drain_timeout=plan.drain_timeout,
        start_timeout=plan.start_timeout,
        env={**settings, **plan.env},
    )
    backends = ("blue", "green") if plan.strategy == "bluegreen" else ("app",)
    proxy: HAProxy | None = None
    load: LoadRun | None = None
    try:
        proxy = start_haproxy(
            workdir=workdir / "haproxy", backends=backends, check=check, retries=plan.retries
        )
        deployment = Deployment(plan, fleet, proxy, progress)
        progress.phase = "starting"
        current = [deployment.launch(CURRENT, n, backends[0]) for n in range(plan.instances)]
        _warn_about_paths(plan, current[0], progress)
        load = start_load(
            LoadPlan(
                proxy.url,
                rate=plan.rate,
                duration=plan.duration,
                fast_path=plan.fast_path,
                slow_path=plan.slow_path,
                slow_fraction=plan.slow_fraction,
                cart_fraction=plan.cart_fraction,
            ),
            workdir=workdir / "k6",
        )
        records_path = load.records_path
        deployment.records = lambda: read_records(records_path)
        load_started = time.time()
        progress.phase = "steady"
        progress.event(f"load started: {plan.rate} requests/s for {plan.duration:g}s")
        progress.watch(records_path)
        time.sleep(min(5.0, plan.duration * 0.2))
        deploy_started = time.time()
        progress.event(f"deploy started ({plan.strategy})")
        try:
            DEPLOYERS[plan.strategy](deployment, current)
        except NotReady as error:
            deployment.outcome.aborted = str(error)
            progress.event(f"deploy aborted: {str(error).splitlines()[0]}")
        deploy_ended = time.time()
        progress.phase = "steady"
        progress.event(f"deploy ended after {deploy_ended - deploy_started:.1f}s")
        result = load.result(timeout=plan.duration + 120)
        progress.event("load ended")
    finally:
        progress.stop()
        if load is not None and load.process.returncode is None:
            load.process.stop(signal.SIGINT)
        fleet.stop_all()
        if proxy is not None:
            proxy.stop()
    return RehearsalReport(
        plan=plan,
        result=result,
        load_started=load_started,
        deploy_started=deploy_started,
        deploy_ended=deploy_ended,
        outcome=deployment.outcome,
        events=list(progress.events),
        releases={instance.name: instance.release for instance in fleet.instances},
    )


def _warn_about_paths(plan: RehearsalPlan, instance: Instance, progress: Progress) -> None:
    """Say so when the load's paths do not exist in the app: the load would prove little."""
    paths = [("--fast-path", plan.fast_path)]
    if plan.slow_fraction > 0:
        paths.append(("--slow-path", plan.slow_path))
    for option, path in paths:
        status = http_status(instance.url + path, timeout=5.0)
        if status is None or status >= 400:
            progress.event(
                f"warning: {option} {path} answered {status or 'nothing'}; point {option} at a "
                f"path of your app that answers 200"
            )


def _exit_text(status: int | None) -> str:
    if status is not None and status < 0:
        return f"exited on {signal.Signals(-status).name}"
    return "exited cleanly" if status == 0 else f"exited with status {status}"
