"""Rehearsing a deploy of an app on this machine, under load, behind HAProxy.

The app's instances run under the real server (uvicorn, gunicorn or a command of the
user's), HAProxy fronts them with TLS, active readiness checks and no retries, k6 sends
open-loop load (zerodown's or the user's own script) and a few users who check their
sessions, and a strategy (rolling, blue-green, canary, gunicorn HUP) replaces the running
release with the new one. Every request's outcome lands in the report.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from dataclasses import replace
from pathlib import Path

from ..._flags import COHORT_VARIABLE, FLAGS_VARIABLE
from ..._rehearsal_env import TOKEN_VARIABLE as REHEARSAL_TOKEN
from ..._sessions.rehearsal import HEADER as REHEARSAL_HEADER
from ..._sessions.rehearsal import PATH as SESSION_PATH
from ..postgres import Database, ThrowawayPostgres
from ..procs import child_environment, http_get
from .database import DatabaseReport, DatabaseWatch, Step, read_log, run_step
from .fleet import Fleet, Instance, NotReady
from .haproxy import HAProxy, ProxyCheck, start_haproxy
from .ingress import IngressNginx
from .k6 import LoadPlan, LoadRun, replaced_options, start_load
from .kube import KubeService
from .machine import CpuSampler
from .plan import CURRENT, NEW, RehearsalPlan
from .progress import Progress
from .report import RehearsalReport
from .strategies import DEPLOYERS, Deployment

HEALTH_TOKEN = "ZERODOWN_HEALTH_TOKEN"


def rehearse(plan: RehearsalPlan, workdir: Path, progress: Progress) -> RehearsalReport:
    """Run the plan's deploy under load and report every request.

    Raises :class:`NotReady` when the running release cannot be started at all, and
    :class:`~.database.StepFailed` when a setup, migrate or contract command fails; a new
    release that never turns ready is reported as an aborted deploy.
    """
    server = ThrowawayPostgres.start() if plan.database == "postgres" else None
    try:
        url = server.database.url if server else plan.database_url
        plan = _with_flags(_with_database(plan, url))
        return _rehearse(plan, workdir, progress, server, url)
    finally:
        if server is not None:
            server.stop()


def _with_database(plan: RehearsalPlan, url: str | None) -> RehearsalPlan:
    """The plan with DATABASE_URL set and the ``--env`` placeholders filled in."""
    if url is None:
        return plan
    database = Database(url)
    return replace(
        plan,
        env={"DATABASE_URL": url, **database.fill(plan.env)},
        new_env=database.fill(plan.new_env),
    )


def _with_flags(plan: RehearsalPlan) -> RehearsalPlan:
    """Each release's cohort (the new one is ``canary`` in a canary deploy) and its flags,
    in the variables ``zerodown.openfeature`` reads."""
    env = {**plan.env, COHORT_VARIABLE: "stable"}
    cohort = "canary" if plan.strategy == "canary" else "stable"
    new_env = {**plan.new_env, COHORT_VARIABLE: cohort}
    if plan.flags or plan.new_flags:
        env[FLAGS_VARIABLE] = json.dumps(dict(plan.flags))
        new_env[FLAGS_VARIABLE] = json.dumps({**plan.flags, **plan.new_flags})
    return replace(plan, env=env, new_env=new_env)


def _rehearse(
    plan: RehearsalPlan,
    workdir: Path,
    progress: Progress,
    server: ThrowawayPostgres | None,
    url: str | None,
) -> RehearsalReport:
    """The rehearsal, with ``server`` (a throwaway PostgreSQL) or the user's database at
    ``url`` (libpq's form, which the watch connects to) when there is one."""
    if plan.disabled:
        # Without zerodown the app has no probes; the usual check is "anything but a 5xx".
        check = ProxyCheck(path=plan.fast_path, expect="rstatus ^[234]")
        ready_path = plan.fast_path
    else:
        check = ProxyCheck()
        ready_path = check.path
    rehearsal_token = secrets.token_urlsafe(24)
    # The user's own health token if they set one: their checks may be told it elsewhere.
    health_token = plan.env.get(HEALTH_TOKEN) or secrets.token_urlsafe(24)
    env = {**plan.env, REHEARSAL_TOKEN: rehearsal_token, HEALTH_TOKEN: health_token}
    if plan.disabled:
        env["ZERODOWN_DISABLED"] = "1"
    fleet = Fleet(
        plan.server,
        workdir / "instances",
        ready_path=ready_path,
        ready_status=(lambda status: status is not None and status < 500)
        if plan.disabled
        else (lambda status: status == 200),
        drain_timeout=plan.drain_timeout,
        ready_timeout=plan.ready_timeout,
        env=env,
        health_token=health_token,
        name_responses=plan.network != "haproxy",
    )
    # Before any instance starts: an error in the user's script shows at once.
    replaced = [] if plan.k6_script is None else replaced_options(plan.k6_script)
    backends = ("blue", "green") if plan.strategy == "bluegreen" else ("app",)
    proxy: HAProxy | KubeService | None = None
    ingress: IngressNginx | None = None
    load: LoadRun | None = None
    cpu = CpuSampler().start()
    steps: list[Step] = []
    watch: DatabaseWatch | None = None

    def step(name: str, command: str, release: str) -> None:
        new = release == NEW
        app_dir = (plan.new_dir if new else None) or Path.cwd()
        extra = {**env, **(plan.new_env if new else {})}
        if plan.seed_rows is not None and name == "setup":
            extra["ZERODOWN_SEED_ROWS"] = str(plan.seed_rows)
        progress.event(f"{name} started: {command}")
        done = run_step(name, command, child_environment(app_dir, extra), app_dir, workdir)
        steps.append(done)
        progress.event(f"{name} ended after {done.ended - done.started:.1f}s")

    try:
        for command in plan.setup:
            step("setup", command, CURRENT)
        if url is not None:
            watch = DatabaseWatch(url).start()
        if plan.network != "haproxy":
            # Without zerodown there are no probe endpoints: the app's own path, as above.
            proxy = KubeService(
                readiness=replace(plan.readiness, path=plan.fast_path)
                if plan.disabled
                else plan.readiness,
                startup=None if plan.disabled else plan.startup,
                propagation=plan.propagation,
                spread=plan.propagation_spread,
                seed=plan.seed,
                ready_timeout=plan.ready_timeout,
                event=progress.event,
            )
            if plan.network == "ingress-nginx":
                ingress = IngressNginx(workdir / "ingress-nginx")
                proxy.on_sync = ingress.update
        else:
            proxy = start_haproxy(
                workdir=workdir / "haproxy",
                backends=backends,
                check=check,
                retries=plan.retries,
                tls=True,
            )
        deployment = Deployment(plan, fleet, proxy, progress)
        if plan.migrate is not None and plan.migrate_at == "after-new":
            migrate = plan.migrate
            deployment.when_new_ready = lambda: step("migrate", migrate, NEW)
        progress.phase = "starting"
        for override in plan.overrides:
            progress.event(f"setting: {override}")
        current = deployment.launch(CURRENT, range(plan.instances), backends[0])
        if isinstance(proxy, KubeService):
            timeout = plan.propagation + plan.propagation_spread + 10
            proxy.wait_for_endpoints([instance.name for instance in current], timeout)
        worker_class = current[0].worker_class()
        if plan.k6_script is None and plan.traffic is None:
            _warn_about_paths(plan, current[0], progress)
        elif replaced:
            note = (
                f"your script's options {', '.join(replaced)} are replaced by the rehearsal's "
                f"executor: {plan.rate} iterations/s for {plan.duration:g}s"
            )
            deployment.outcome.notes.append(note)
            progress.event(note)
        users = _session_users(plan, current[0], rehearsal_token, progress)
        load_started = time.time()
        load = start_load(
            LoadPlan(
                proxy.url if ingress is None else ingress.url,
                rate=plan.rate,
                duration=plan.duration,
                fast_path=plan.fast_path,
                slow_path=plan.slow_path,
                slow_fraction=plan.slow_fraction,
                script=plan.k6_script,
                exec=plan.k6_exec,
                traffic=None if plan.traffic is None else dict(plan.traffic),
                vus=50 if plan.k6_script is None else max(50, plan.rate),
                max_vus=400 if plan.k6_script is None else max(400, plan.rate * 10),
                session_users=users,
                session_rate=max(1, users * 2),
                rehearsal_token=rehearsal_token,
                ca_file=proxy.trusted_certificate,
            ),
            workdir=workdir / "k6",
        )
        load.wait_started()
        deployment.records = load.records
        progress.phase = "steady"
        unit = "iterations of your k6 script" if plan.k6_script else "requests"
        progress.event(f"load started: {plan.rate} {unit}/s for {plan.duration:g}s")
        progress.watch(load.records)
        time.sleep(min(5.0, plan.duration * 0.2))
        deploy_started = time.time()
        progress.event(f"deploy started ({plan.strategy})")
        if plan.migrate is not None and plan.migrate_at == "before-new":
            step("migrate", plan.migrate, NEW)
        try:
            DEPLOYERS[plan.strategy](deployment, current)
        except NotReady as error:
            deployment.outcome.aborted = str(error)
            progress.event(f"deploy aborted: {str(error).splitlines()[0]}")
        outcome = deployment.outcome
        if plan.contract is not None and not (outcome.aborted or outcome.rolled_back):
            step("contract", plan.contract, NEW)
        deploy_ended = time.time()
        progress.phase = "steady"
        progress.event(f"deploy ended after {deploy_ended - deploy_started:.1f}s")
        result = load.result(timeout=plan.duration + 120)
        progress.event("load ended")
    finally:
        cpu.stop()
        if watch is not None:
            watch.stop()
        progress.stop()
        if load is not None and load.process.returncode is None:
            load.process.stop(signal.SIGINT)
        fleet.stop_all()
        if proxy is not None:
            proxy.stop()
        if ingress is not None:
            ingress.stop()
    return RehearsalReport(
        plan=plan,
        result=result,
        load_started=load_started,
        deploy_started=deploy_started,
        deploy_ended=deploy_ended,
        outcome=deployment.outcome,
        events=list(progress.events),
        releases={instance.name: instance.release for instance in fleet.instances},
        pods=proxy.timelines if isinstance(proxy, KubeService) else [],
        worker_class=worker_class,
        cpu=cpu.samples,
        database=None
        if url is None
        else DatabaseReport.build(
            url=url,
            throwaway=server is not None,
            steps=steps,
            watch=watch,
            log=[] if server is None else read_log(server.log_path),
            releases={instance.name: instance.release for instance in fleet.instances},
        ),
    )


def _session_users(plan: RehearsalPlan, instance: Instance, token: str, progress: Progress) -> int:
    """How many users check their sessions: none unless the app has zerodown's sessions."""
    if plan.session_users == 0 or plan.disabled:
        return 0
    status, _ = http_get(
        instance.url + SESSION_PATH, timeout=5.0, headers={REHEARSAL_HEADER: token}
    )
    # A call without a cookie starts a session that nobody keeps.
    if status != 200:
        progress.event(
            "sessions not checked: the app does not use zerodown's session middleware "
            "(for other session systems, check the logged-in state in your k6 script)"
        )
        return 0
    progress.event(f"{plan.session_users} users check that their sessions survive")
    return plan.session_users


def _warn_about_paths(plan: RehearsalPlan, instance: Instance, progress: Progress) -> None:
    """Say so when the load's paths do not exist in the app: the load would prove little."""
    paths = [("--fast-path", plan.fast_path)]
    if plan.slow_fraction > 0:
        paths.append(("--slow-path", plan.slow_path))
    for option, path in paths:
        status, _ = http_get(instance.url + path, timeout=5.0)
        if status is None or status >= 400:
            progress.event(
                f"warning: {option} {path} answered {status or 'nothing'}; point {option} at a "
                f"path of your app that answers 200"
            )
