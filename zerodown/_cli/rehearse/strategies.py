"""The deploy strategies: rolling, blue-green, canary with rollback, gunicorn HUP."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Sequence

from ..._polling import poll
from .fleet import Fleet, Instance, NotReady
from .haproxy import HAProxy
from .k6 import RequestRecord
from .plan import FULL_WEIGHT, NEW, RehearsalPlan, Strategy
from .progress import Progress
from .report import DeployOutcome, percentile


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

    def remove(self, instances: Sequence[Instance]) -> None:
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

        def idle() -> bool:
            stats = self.proxy.server_stats()
            return all(stats.get(name, {}).get("scur", "0") == "0" for name in names)

        poll(idle, timeout=self.plan.drain_timeout)


def deploy_rolling(deployment: Deployment, current: list[Instance]) -> None:
    """One instance at a time: SIGTERM it, start its replacement, wait until it is ready."""
    for number, old in enumerate(current):
        deployment.progress.phase = f"rolling {number + 1}/{len(current)}"
        deployment.progress.event(f"SIGTERM to {old.name} (pid {old.process.pid})")
        old.terminate()
        deployment.launch(NEW, number, deployment.backend_of[old.name])
        deployment.remove([old])


def deploy_bluegreen(deployment: Deployment, current: list[Instance]) -> None:
    """Start green beside blue, switch the proxy to green, remove blue once it is idle."""
    deployment.progress.phase = "starting green"
    for number in range(len(current)):
        deployment.launch(NEW, number, "green")
    deployment.progress.phase = "switching"
    deployment.proxy.route_to("green")
    deployment.progress.event("proxy switched to green")
    deployment.wait_for_idle(current)
    deployment.progress.phase = "removing blue"
    deployment.remove(current)


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
            deployment.remove(canaries)
            return
    deployment.wait_for_idle(current)
    deployment.remove(current)


def deploy_hup(deployment: Deployment, current: list[Instance]) -> None:
    """SIGHUP each gunicorn master in turn; wait until its workers are all new and ready."""
    for number, instance in enumerate(current):
        deployment.progress.phase = f"reloading {number + 1}/{len(current)}"
        _reload(deployment, instance)
        deployment.fleet.wait_until_ready(instance)
        deployment.progress.event(f"{instance.name} reloaded: every worker is new")


def _reload(deployment: Deployment, instance: Instance) -> None:
    """SIGHUP one gunicorn master; return once none of its workers is from before."""
    old_workers = instance.workers()
    deployment.progress.event(f"SIGHUP to {instance.name} (pid {instance.process.pid})")
    instance.process.send_signal(signal.SIGHUP)
    timeout = deployment.plan.start_timeout

    def stuck() -> NotReady:
        return NotReady(
            f"{instance.name} still runs workers from before the reload after {timeout:g}s; "
            f"its log ends with:\n{instance.process.log_text()[-3000:]}"
        )

    def all_new() -> bool:
        if instance.process.returncode is not None:
            raise stuck()
        workers = instance.workers()
        return bool(workers) and not workers & old_workers

    if not poll(all_new, timeout=timeout):
        raise stuck()


DEPLOYERS: dict[Strategy, Callable[[Deployment, list[Instance]], None]] = {
    "rolling": deploy_rolling,
    "bluegreen": deploy_bluegreen,
    "canary": deploy_canary,
    "hup": deploy_hup,
}


def _exit_text(status: int | None) -> str:
    if status is not None and status < 0:
        return f"exited on {signal.Signals(-status).name}"
    return "exited cleanly" if status == 0 else f"exited with status {status}"
