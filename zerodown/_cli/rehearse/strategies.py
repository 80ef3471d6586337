"""The deploy strategies: rolling, blue-green, canary with rollback, gunicorn HUP."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ..._polling import poll
from .fleet import Fleet, Instance, NotReady
from .haproxy import HAProxy
from .k6 import RequestRecord
from .plan import FULL_WEIGHT, NEW, RehearsalPlan, Strategy
from .progress import Progress
from .report import DeployOutcome, percentile


class DataPlane(Protocol):
    """What sends the load to the instances: HAProxy, or a Kubernetes Service."""

    def add_server(self, backend: str, name: str, port: int, weight: int = ...) -> None: ...
    def deleting(self, name: str) -> None: ...
    def forget(self, backend: str, name: str) -> None: ...


class Deployment:
    """What a strategy works with: the fleet, the data plane, the load's records so far."""

    def __init__(
        self, plan: RehearsalPlan, fleet: Fleet, proxy: DataPlane, progress: Progress
    ) -> None:
        self.plan = plan
        self.fleet = fleet
        self.proxy = proxy
        self.progress = progress
        self.outcome = DeployOutcome()
        self.records: Callable[[], list[RequestRecord]] = list
        #: Which backend each instance serves in.
        self.backend_of: dict[str, str] = {}
        #: Called once, when the first instance of the new release is in the proxy.
        self.when_new_ready: Callable[[], None] | None = None

    def launch(
        self, release: str, numbers: Sequence[int], backend: str, weight: int = FULL_WEIGHT
    ) -> list[Instance]:
        """Start instances together; as each turns ready, put it behind the proxy."""
        plan = self.plan
        new = release == NEW
        app = (plan.new_app or plan.app) if new else plan.app
        app_dir = (plan.new_dir if new else None) or Path.cwd()
        env = plan.new_env if new else {}
        started = [self.fleet.start(app, release, n, env, app_dir) for n in numbers]
        for instance in started:
            self.fleet.wait_until_ready(instance)
            self.proxy.add_server(backend, instance.name, instance.port, weight)
            self.backend_of[instance.name] = backend
            self.progress.event(f"{instance.name} ready on port {instance.port}, in the proxy")
            if new and self.when_new_ready is not None:
                call, self.when_new_ready = self.when_new_ready, None
                call()
        return started

    def terminate(self, instance: Instance) -> None:
        """Delete the pod: the data plane is told, the preStop hook runs, then SIGTERM."""
        self.proxy.deleting(instance.name)
        pre_stop = self.plan.pre_stop
        if pre_stop is None:
            self.progress.event(f"SIGTERM to {instance.name} (pid {instance.process.pid})")
        else:
            self.progress.event(
                f"{instance.name} deleted: preStop {pre_stop.describe()}, then SIGTERM"
            )
        instance.delete(None if pre_stop is None else lambda: pre_stop.run(instance.url))

    def remove(self, instances: Sequence[Instance]) -> None:
        """SIGTERM each, wait for the exits within the grace period, take them out."""
        for instance in instances:
            if instance.deleted_at is None:
                self.terminate(instance)
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
        self.proxy.forget(self.backend_of[instance.name], instance.name)

    @property
    def balancer(self) -> HAProxy:
        """The proxy, for the strategies that shift traffic through it (blue-green, canary)."""
        if not isinstance(self.proxy, HAProxy):
            raise RuntimeError(f"--strategy {self.plan.strategy} needs --network haproxy")
        return self.proxy

    def wait_for_idle(self, instances: Sequence[Instance]) -> None:
        """Wait (up to the drain timeout) until the proxy has no request at ``instances``."""
        names = {instance.name for instance in instances}

        def idle() -> bool:
            stats = self.balancer.server_stats()
            return all(stats.get(name, {}).get("scur", "0") == "0" for name in names)

        poll(idle, timeout=self.plan.drain_timeout)


def deploy_rolling(deployment: Deployment, current: list[Instance]) -> None:
    """Replace the instances as a Kubernetes Deployment rolls: at most ``max_surge`` above
    the desired count, at most ``max_unavailable`` below it, an old instance signalled only
    once enough new ones are ready and in the proxy."""
    plan, progress = deployment.plan, deployment.progress
    desired, old = len(current), list(current)
    new: list[Instance] = []
    terminating: list[Instance] = []
    while old or len(new) < desired:
        # Terminating instances do not count, as Kubernetes counts them.
        room = min(desired + plan.max_surge - len(old) - len(new), desired - len(new))
        if room > 0:
            progress.phase = f"rolling {len(new) + 1}/{desired}"
            new += deployment.launch(
                NEW, range(len(new), len(new) + room), _backend(deployment, current)
            )
        leaving = min(len(old), len(old) + len(new) - (desired - plan.max_unavailable))
        for instance in old[: max(0, leaving)]:
            deployment.terminate(instance)
            terminating.append(instance)
        old = old[max(0, leaving) :]
    deployment.remove(terminating)


def _backend(deployment: Deployment, instances: Sequence[Instance]) -> str:
    return deployment.backend_of[instances[0].name]


def deploy_bluegreen(deployment: Deployment, current: list[Instance]) -> None:
    """Start green beside blue, switch the proxy to green, remove blue once it is idle."""
    deployment.progress.phase = "starting green"
    deployment.launch(NEW, range(len(current)), "green")
    deployment.progress.phase = "switching"
    deployment.balancer.route_to("green")
    deployment.progress.event("proxy switched to green")
    deployment.wait_for_idle(current)
    deployment.progress.phase = "removing blue"
    deployment.remove(current)


def deploy_canary(deployment: Deployment, current: list[Instance]) -> None:
    """Shift traffic to the new release step by step; roll back if it does worse."""
    plan, proxy, progress = deployment.plan, deployment.balancer, deployment.progress
    backend = _backend(deployment, current)
    stable = {instance.name for instance in current}
    launched = time.time()
    steady = deployment.records()
    steady_p99 = percentile(sorted(r.latency for r in steady if not r.failed), 0.99)
    canaries = deployment.launch(NEW, range(len(current)), backend, weight=0)
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
            records = deployment.records()
            answered = [r for r in records if r.server in names and r.started >= step_started]
            # The canary's start (a migration, a shared key it changed) may break the
            # stable release: that rolls it back whatever its own answers say.
            problem = plan.thresholds.stable_problem(
                [r for r in steady if r.server in stable],
                [r for r in records if r.server in stable and r.started >= launched],
            ) or plan.thresholds.canary_problem(answered, steady_p99)
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
    """Reload each instance's workers in turn, as its server does it (SIGHUP to gunicorn's,
    hypercorn's or granian's master, uWSGI's chain reload); wait until its workers are all
    new and it is ready."""
    for number, instance in enumerate(current):
        deployment.progress.phase = f"reloading {number + 1}/{len(current)}"
        _reload(deployment, instance)
        deployment.fleet.wait_until_ready(instance)
        deployment.progress.event(f"{instance.name} reloaded: every worker is new")


def _reload(deployment: Deployment, instance: Instance) -> None:
    """Reload one instance's workers; return once none of them is from before."""
    old_workers = instance.workers()
    done = deployment.fleet.reload(instance)
    deployment.progress.event(f"{done} to {instance.name} (pid {instance.process.pid})")
    timeout = deployment.plan.ready_timeout

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
