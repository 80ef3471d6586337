"""Rehearsing a deploy of an app on this machine, under load, behind HAProxy.

The app's instances run under the real server (uvicorn, gunicorn or a command of the
user's), HAProxy fronts them with active readiness checks and no retries, k6 sends
open-loop load, and a strategy (rolling, blue-green, canary, gunicorn HUP) replaces the
running release with the new one. Every request's outcome lands in the report.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from ..procs import http_status
from .fleet import Fleet, Instance, NotReady
from .haproxy import HAProxy, ProxyCheck, start_haproxy
from .k6 import LoadPlan, LoadRun, read_records, start_load
from .plan import CURRENT, RehearsalPlan
from .progress import Progress
from .report import RehearsalReport
from .strategies import DEPLOYERS, Deployment


def rehearse(plan: RehearsalPlan, workdir: Path, progress: Progress) -> RehearsalReport:
    """Run the plan's deploy under load and report every request.

    Raises :class:`NotReady` when the running release cannot be started at all; a new
    release that never turns ready is reported as an aborted deploy.
    """
    if plan.disabled:
        # Without zerodown the app has no probes; the usual check is "anything but a 5xx".
        check = ProxyCheck(path=plan.fast_path, expect="rstatus ^[234]")
        ready_path = plan.fast_path
    else:
        check = ProxyCheck()
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
