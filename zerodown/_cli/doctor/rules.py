"""What ``zerodown doctor`` checks: everything in a Deployment and its server's settings that
decides whether a rotation loses requests.

Each rule reads the manifest as the kubelet and the Deployment controller would, and the
server's settings as the server itself parses them (uvicorn's and gunicorn's own argument
parsers, gunicorn's config file); the budget is zerodown's own
(:meth:`zerodown.Lifecycle.budget_problems`), with the preStop hook counted, since the
kubelet counts the grace period from its start.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..._errors import ConfigurationError
from ..._lifecycle import Lifecycle
from ..._probes import ProbePaths
from ..._settings import Settings
from .manifest import SHELLS, Manifest, pre_stop_hook, rollout_pods

Level = Literal["error", "warning"]
#: Makes a finding of the manifest's file: (level, rule, line, problem, effect, fix).
_Make = Callable[["Level", str, int, str, str, str], "Finding"]
_ServerFindings = Generator["Finding", None, "Server | None"]
#: Kubernetes' defaults for a RollingUpdate that does not say.
DEFAULT_MAX_SURGE = DEFAULT_MAX_UNAVAILABLE = "25%"
#: The kubelet's defaults for a probe that does not say.
DEFAULT_PERIOD, DEFAULT_FAILURE_THRESHOLD = 10, 3
#: uvicorn's defaults.
UVICORN_KEEP_ALIVE = 5.0


@dataclass(frozen=True, slots=True)
class Assumptions:
    """What the checks assume of the cluster; each an option of ``zerodown doctor``."""

    #: Seconds from a pod's deletion until every node's data plane stopped sending it new
    #: connections (kube-proxy's rules, an ingress's endpoints).
    propagation: float = 1.5
    #: The idle timeout of the proxy in front for its upstream connections (ingress-nginx,
    #: AWS ALB: 60 s).
    proxy_idle_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    rule: str
    file: str
    line: int
    problem: str
    #: What it causes during a deploy, in one sentence.
    effect: str
    fix: str

    def as_json(self) -> dict[str, object]:
        return {
            "level": self.level,
            "rule": self.rule,
            "file": self.file,
            "line": self.line,
            "problem": self.problem,
            "effect": self.effect,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class Server:
    """What bounds the drain and keeps connections, as the server parses its settings."""

    kind: str
    drain: float | None
    keep_alive: float | None
    worker_class: str = ""
    #: Where the server's settings came from (the config file, for gunicorn).
    source: str = ""
    #: gunicorn: zerodown's hooks are in its config.
    hooked: bool = False


def diagnose(
    manifest: Manifest,
    assumptions: Assumptions,
    *,
    gunicorn_config: Path | None = None,
    callbacks_budget: float | None = None,
) -> list[Finding]:
    """Every finding of the manifest; ``callbacks_budget`` is the app's shutdown callbacks'
    (from ``--app``), not counted when None."""
    found = _diagnose(manifest, assumptions, gunicorn_config, callbacks_budget)
    return sorted(found, key=lambda finding: finding.line)


def _diagnose(
    manifest: Manifest,
    assumptions: Assumptions,
    gunicorn_config: Path | None,
    callbacks_budget: float | None,
) -> Iterator[Finding]:
    d, c, file = manifest.deployment, manifest.container, manifest.file

    def finding(level: Level, rule: str, line: int, problem: str, effect: str, fix: str) -> Finding:
        return Finding(level, rule, file, line, problem, effect, fix)

    env = manifest.env()
    try:
        settings = Settings.load(environ=env)
    except ConfigurationError as error:
        yield finding(
            "error",
            "settings",
            d.line(*c, "env"),
            str(error),
            "zerodown refuses to start with it, so no pod of the release becomes ready",
            "fix the variable's value",
        )
        return
    yield from _probes(manifest, env, finding)
    command = [str(part) for part in (d.get(*c, "command") or []) + (d.get(*c, "args") or [])]
    pre_stop, pre_stop_line, endpoint = _pre_stop(manifest, env)
    server = yield from _command(manifest, command, gunicorn_config, endpoint, finding)
    grace = d.get(*manifest.pod, "terminationGracePeriodSeconds", default=30)
    grace_line = d.line(*manifest.pod, "terminationGracePeriodSeconds")
    yield from _budget(
        settings, grace, grace_line, pre_stop, server, callbacks_budget, manifest, finding
    )
    delay = settings.shutdown_delay
    if server is not None and server.kind == "gunicorn" and not server.hooked and not endpoint:
        delay = 0.0  # the master closes its listener at SIGTERM without zerodown's hooks
    if pre_stop > 0 and delay > 0 and not endpoint:
        yield finding(
            "warning",
            "double-wait",
            pre_stop_line,
            f"a preStop sleep of {pre_stop:g}s and zerodown's in-app delay of {delay:g}s both wait",
            f"each pod takes {pre_stop + delay:g}s longer to stop than it needs, out of the "
            "grace period",
            "keep one: drop the preStop sleep (zerodown's delay also closes kept-alive "
            "connections), or set ZERODOWN_SHUTDOWN_DELAY=0",
        )
    lame_duck = delay if endpoint else pre_stop + delay
    readiness = d.get(*c, "readinessProbe", default={}) or {}
    checked = float(readiness.get("periodSeconds", DEFAULT_PERIOD)) * float(
        readiness.get("failureThreshold", DEFAULT_FAILURE_THRESHOLD)
    )
    where = manifest.env_line("ZERODOWN_SHUTDOWN_DELAY")
    if lame_duck < assumptions.propagation:
        yield finding(
            "error",
            "delay-below-propagation",
            where,
            f"the pod keeps accepting connections for {lame_duck:g}s after it is told to stop, "
            f"less than the {assumptions.propagation:g}s the endpoint removal takes to reach "
            "every node (--propagation)",
            "new connections that kube-proxy still sends to the pod after its listener "
            "closed are refused",
            f"set ZERODOWN_SHUTDOWN_DELAY to at least {math.ceil(assumptions.propagation)} "
            "(and the grace period to fit it)",
        )
    elif lame_duck < assumptions.propagation + checked:
        yield finding(
            "warning",
            "delay-below-health-checks",
            where,
            f"the lame-duck window ({lame_duck:g}s) is shorter than the propagation "
            f"({assumptions.propagation:g}s) plus the readiness probe's "
            f"periodSeconds x failureThreshold ({checked:g}s)",
            "a data plane that health-checks pods itself (an ingress or load balancer that "
            "probes /readyz) may still send requests after the listener closed",
            f"set ZERODOWN_SHUTDOWN_DELAY to at least "
            f"{math.ceil(assumptions.propagation + checked)}, or lower the readiness probe's "
            "periodSeconds",
        )
    yield from _rollout(manifest, finding)
    if server is not None:
        yield from _keep_alive(server, settings, assumptions, manifest, finding)


def _probes(manifest: Manifest, env: dict[str, str], finding: _Make) -> Iterator[Finding]:
    d, c = manifest.deployment, manifest.container
    paths = ProbePaths(prestop=env.get("ZERODOWN_PRESTOP_PATH") or None)
    ports = {
        value
        for port in d.get(*c, "ports", default=[]) or []
        for value in (port.get("name"), port.get("containerPort"))
        if value is not None
    }
    wanted = {
        "readinessProbe": paths.readiness,
        "livenessProbe": paths.liveness,
        "startupProbe": paths.startup,
    }
    for probe, path in wanted.items():
        spec = d.get(*c, probe)
        if spec is None:
            if probe == "readinessProbe":
                yield finding(
                    "error",
                    "probe-missing",
                    d.line(*c),
                    "the container has no readinessProbe",
                    "Kubernetes sends traffic to a new pod as soon as it starts, before the app "
                    "can answer, and never takes a stopping pod out of an ingress that probes",
                    f"add readinessProbe: httpGet: {{path: {path}, port: http}}",
                )
            continue
        got = d.get(*c, probe, "httpGet", "path")
        line = d.line(*c, probe, "httpGet", "path")
        if got is None:
            yield finding(
                "error" if probe == "readinessProbe" else "warning",
                "probe-not-http",
                d.line(*c, probe),
                f"the {probe} is not an httpGet of {path}",
                "zerodown's phases (starting, draining) and its checks do not decide what "
                "the kubelet sees",
                f"httpGet: {{path: {path}, port: http}}",
            )
            continue
        if probe == "livenessProbe" and got == paths.readiness:
            yield finding(
                "error",
                "liveness-is-readiness",
                line,
                f"the livenessProbe asks {got}, zerodown's readiness",
                "readiness fails on purpose from the SIGTERM on, and when a dependency is down, "
                "so the kubelet kills pods mid-drain and restarts healthy ones in an outage",
                f"point the livenessProbe at {paths.liveness}",
            )
        elif got != path:
            yield finding(
                "error" if probe == "readinessProbe" else "warning",
                "probe-path",
                line,
                f"the {probe} asks {got!r}, not zerodown's {path}",
                "zerodown's phases (starting, draining) and its checks do not decide what "
                "the kubelet sees"
                + (", so a stopping pod stays in rotation" if probe == "readinessProbe" else ""),
                f"httpGet: {{path: {path}, port: http}}",
            )
        port = d.get(*c, probe, "httpGet", "port")
        if port not in ports:
            yield finding(
                "error",
                "probe-port",
                d.line(*c, probe, "httpGet", "port"),
                f"the {probe} asks port {port!r}, which the container does not declare",
                "the probe fails from the start, so the pod never becomes ready (or is restarted)",
                f"use one of the container's ports: {', '.join(map(str, sorted(ports, key=str)))}",
            )


def _command(
    manifest: Manifest,
    command: list[str],
    gunicorn_config: Path | None,
    endpoint: bool,
    finding: _Make,
) -> _ServerFindings:
    """Findings of the entrypoint; returns the server's settings, None when not known."""
    d, c = manifest.deployment, manifest.container
    line = d.line(*c, "command") if d.get(*c, "command") else d.line(*c, "args")
    if not command:
        yield finding(
            "warning",
            "entrypoint-unknown",
            d.line(*c),
            "the container has no command: the image's entrypoint runs, which this check "
            "cannot see",
            "if the entrypoint is a shell script that does not exec the server, SIGTERM "
            "never reaches it and every pod is killed at the end of the grace period",
            "give the server's command in exec form: command: [uvicorn, myapp:app, ...]",
        )
        return None
    program = Path(command[0]).name
    if program in SHELLS:
        yield finding(
            "error",
            "entrypoint-shell",
            line,
            f"the server runs under {program} ({shlex.join(command)[:80]})",
            "the shell is PID 1 and does not pass SIGTERM on: the server never drains and is "
            "killed at the end of the grace period",
            "exec form, the server first: command: [uvicorn, myapp:app, ...] (or `exec` in "
            "the script)",
        )
        return None
    if program == "python" and command[1:3] == ["-m", "gunicorn"]:
        command = ["gunicorn", *command[3:]]
        program = "gunicorn"
    if program in ("python", "python3") and command[1:3] == ["-m", "uvicorn"]:
        command = ["uvicorn", *command[3:]]
        program = "uvicorn"
    if program == "uvicorn":
        return (yield from _uvicorn(manifest, command, line, finding))
    if program == "gunicorn":
        return (yield from _gunicorn(command, gunicorn_config, endpoint, line, finding))
    yield finding(
        "warning",
        "server-unknown",
        line,
        f"{program} is not a server this check reads (uvicorn, gunicorn)",
        "whether zerodown holds its SIGTERM back, and the drain's bound, are not known to "
        "this check",
        "see docs/servers.md: hypercorn --workers 0 and granian's ASGI interface are held "
        "in the app; uWSGI, hypercorn with workers and granian's WSGI need the preStop "
        "endpoint",
    )
    return None


def _uvicorn(manifest: Manifest, command: list[str], line: int, finding: _Make) -> _ServerFindings:
    from uvicorn.main import main as uvicorn_main

    params = uvicorn_main.make_context("uvicorn", command[1:]).params
    drain = params["timeout_graceful_shutdown"]
    if drain is None:
        yield finding(
            "error",
            "uvicorn-drain-unbounded",
            line,
            "uvicorn runs without --timeout-graceful-shutdown",
            "uvicorn waits for every connection to close, so a long request or a kept-alive "
            "websocket holds the pod until the kubelet kills it mid-response",
            "add --timeout-graceful-shutdown=N, N = ZERODOWN_DRAIN_TIMEOUT",
        )
    return Server(
        "uvicorn",
        None if drain is None else float(drain),
        float(params["timeout_keep_alive"] or UVICORN_KEEP_ALIVE),
    )


def _gunicorn(
    command: list[str], config: Path | None, endpoint: bool, line: int, finding: _Make
) -> _ServerFindings:
    """gunicorn's settings as it parses them; zerodown's hooks are needed unless the
    preStop endpoint (``endpoint``) serves the lame-duck window."""
    from gunicorn.app.wsgiapp import WSGIApplication  # type: ignore[import-untyped]

    argv = list(command)
    if config is not None:
        argv = [part for part in argv if not part.startswith(("--config", "-c"))]
        argv[1:1] = [f"--config={config}"]
    saved = sys.argv
    sys.argv = argv
    try:
        cfg = WSGIApplication().cfg
    except SystemExit:
        yield finding(
            "error",
            "gunicorn-config",
            line,
            f"gunicorn refuses its arguments: {shlex.join(command)[:120]}",
            "the container exits at start, so no pod of the release becomes ready",
            "run the command locally; give --gunicorn-config when the config file is elsewhere",
        )
        return None
    finally:
        sys.argv = saved
    hooks = [cfg.settings[name].get() for name in ("when_ready", "pre_fork", "post_fork")]
    hooked = any(getattr(hook, "__module__", "").startswith("zerodown") for hook in hooks)
    source = str(cfg.config) if cfg.config and Path(cfg.config).is_file() else ""
    if not hooked and not endpoint:
        yield finding(
            "error",
            "gunicorn-hooks",
            line,
            "gunicorn runs without zerodown's hooks"
            + (f" (its config {source} does not import them)" if source else ""),
            "gunicorn's master closes its listener at SIGTERM, so connections that still "
            "arrive while the endpoint removal propagates are refused",
            "from zerodown.gunicorn import *  in the gunicorn config, or a preStop httpGet of "
            "ZERODOWN_PRESTOP_PATH (docs/gunicorn.md)",
        )
    return Server(
        "gunicorn",
        float(cfg.graceful_timeout),
        float(cfg.keepalive),
        str(cfg.worker_class_str),
        source,
        hooked,
    )


def _pre_stop(manifest: Manifest, env: dict[str, str]) -> tuple[float, int, bool]:
    """The preStop hook's sleep in seconds, its line, and whether it calls zerodown's
    preStop endpoint (whose wait is the in-app delay)."""
    hook = pre_stop_hook(manifest)
    if hook is None:
        return 0.0, manifest.deployment.line(*manifest.container), False
    endpoint = hook.http_path is not None and hook.http_path == env.get("ZERODOWN_PRESTOP_PATH")
    return hook.sleep, hook.line, endpoint


def _budget(
    settings: Settings,
    grace: Any,
    grace_line: int,
    pre_stop: float,
    server: Server | None,
    callbacks: float | None,
    manifest: Manifest,
    finding: _Make,
) -> Iterator[Finding]:
    declared = settings.grace_period
    if declared is None:
        yield finding(
            "warning",
            "grace-period-unknown",
            grace_line,
            "ZERODOWN_GRACE_PERIOD is not set",
            "zerodown cannot warn at start-up when its sequence does not fit the grace period",
            f"set ZERODOWN_GRACE_PERIOD={grace} beside terminationGracePeriodSeconds",
        )
    elif float(declared) != float(grace):
        yield finding(
            "error",
            "grace-period-mismatch",
            manifest.env_line("ZERODOWN_GRACE_PERIOD"),
            f"ZERODOWN_GRACE_PERIOD is {declared:g}, terminationGracePeriodSeconds {grace}",
            "zerodown plans its sequence for a grace period the kubelet does not give",
            f"set ZERODOWN_GRACE_PERIOD={grace}",
        )
    lifecycle = Lifecycle(
        settings=Settings(
            shutdown_delay=settings.shutdown_delay,
            drain_timeout=settings.drain_timeout,
            callback_timeout=settings.callback_timeout,
            grace_period=float(grace),
        )
    )
    drain_setting = "ZERODOWN_DRAIN_TIMEOUT"
    drain = None
    if server is not None and server.drain is not None:
        drain = server.drain
        drain_setting = (
            "--graceful-timeout" if server.kind == "gunicorn" else ("--timeout-graceful-shutdown")
        )
    for problem in lifecycle.budget_problems(
        drain_timeout=drain,
        drain_setting=drain_setting,
        pre_stop=pre_stop,
        callbacks=callbacks or 0.0,
    ):
        yield finding(
            "error",
            "budget",
            grace_line,
            problem,
            "the kubelet kills the pod before the drain is done: the requests still in flight fail",
            "raise terminationGracePeriodSeconds, or shorten the delay or the drain",
        )
    if (
        server is not None
        and server.kind == "gunicorn"
        and "ZERODOWN_DRAIN_TIMEOUT" in manifest.env()
        and settings.drain_timeout != server.drain
    ):
        yield finding(
            "warning",
            "drain-setting-ignored",
            manifest.env_line("ZERODOWN_DRAIN_TIMEOUT"),
            f"ZERODOWN_DRAIN_TIMEOUT is {settings.drain_timeout:g} but gunicorn's "
            f"graceful_timeout, {server.drain:g}, is what bounds the drain",
            "the drain is not the one the budget comments and alerts assume",
            "set one value in both, or drop ZERODOWN_DRAIN_TIMEOUT under gunicorn",
        )


def _rollout(manifest: Manifest, finding: _Make) -> Iterator[Finding]:
    d = manifest.deployment
    strategy = d.get("spec", "strategy", default={}) or {}
    replicas = int(d.get("spec", "replicas", default=1))
    if strategy.get("type") == "Recreate":
        yield finding(
            "error",
            "recreate",
            d.line("spec", "strategy", "type"),
            "the Deployment's strategy is Recreate",
            "every old pod is stopped before a new one starts: the app is down for the "
            "whole rollout",
            "strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}",
        )
        return
    rolling = strategy.get("rollingUpdate") or {}
    surge = rollout_pods(rolling.get("maxSurge", DEFAULT_MAX_SURGE), replicas, up=True)
    unavailable = rollout_pods(
        rolling.get("maxUnavailable", DEFAULT_MAX_UNAVAILABLE), replicas, up=False
    )
    line = d.line("spec", "strategy", "rollingUpdate", "maxUnavailable")
    if surge == 0 and unavailable == 0:
        yield finding(
            "error",
            "rollout-stuck",
            line,
            "maxSurge and maxUnavailable are both 0",
            "Kubernetes refuses the Deployment: nothing could be replaced",
            "maxUnavailable: 0 and maxSurge: 1",
        )
    elif unavailable >= replicas:
        yield finding(
            "error",
            "rollout-capacity",
            line,
            f"maxUnavailable lets all {replicas} replicas stop at once",
            "the app has no ready pod during the rollout",
            "maxUnavailable: 0 and maxSurge: 1",
        )
    elif unavailable > 0:
        left = replicas - unavailable
        yield finding(
            "warning",
            "rollout-capacity",
            line,
            f"maxUnavailable {unavailable} of {replicas} replicas"
            + (
                ""
                if "maxUnavailable" in rolling
                else f" (Kubernetes' default {DEFAULT_MAX_UNAVAILABLE})"
            ),
            f"the rollout serves on {left} of {replicas} pods ({100 * left // replicas}% of "
            "the capacity) while old pods stop before new ones are ready",
            "maxUnavailable: 0 and maxSurge: 1, unless the capacity left carries the load",
        )
    labels = d.get("spec", "template", "metadata", "labels", default={}) or {}
    covered = any(
        (budget.get("spec", "selector", "matchLabels", default={}) or {}).items() <= labels.items()
        and budget.get("spec", "selector", "matchLabels")
        for budget in manifest.budgets
    )
    if not covered and replicas > 1:
        yield finding(
            "warning",
            "no-disruption-budget",
            d.line("spec", "template", "metadata", "labels"),
            "no PodDisruptionBudget in the file selects these pods",
            "a node drain may evict every replica at once, outside any rollout's pacing",
            "a PodDisruptionBudget with maxUnavailable: 1 and the pods' labels as selector",
        )


def _keep_alive(
    server: Server, settings: Settings, assumptions: Assumptions, manifest: Manifest, finding: _Make
) -> Iterator[Finding]:
    line = _argument_line(manifest, ("--timeout-keep-alive", "--keep-alive", "--config", "-c"))
    keep_alive = server.keep_alive
    if keep_alive is None:
        return
    if server.kind == "gunicorn" and server.worker_class in (
        "sync",
        "gunicorn.workers.sync.SyncWorker",
    ):
        return  # a sync worker closes every connection after its response
    if server.kind == "gunicorn" and server.worker_class == "asgi":
        if server.drain is not None and keep_alive >= server.drain:
            yield finding(
                "error",
                "keep-alive-holds-worker",
                line,
                f"the asgi worker's keepalive ({keep_alive:g}s) is not below graceful_timeout "
                f"({server.drain:g}s)",
                "an idle kept-alive connection holds a stopping worker until it is killed",
                "--keep-alive below --graceful-timeout (docs/gunicorn.md)",
            )
        return
    if keep_alive <= assumptions.proxy_idle_timeout:
        setting = "--timeout-keep-alive" if server.kind == "uvicorn" else "keepalive"
        yield finding(
            "error",
            "keep-alive-below-proxy",
            line,
            f"the server closes idle connections after {keep_alive:g}s, before the proxy's "
            f"{assumptions.proxy_idle_timeout:g}s (--proxy-idle-timeout)",
            "the proxy sends a request on a connection the server is closing: a 502 now and "
            "then, at any time, not only during deploys",
            f"{setting} above the proxy's idle timeout, e.g. "
            f"{assumptions.proxy_idle_timeout + 15:g}",
        )


def _argument_line(manifest: Manifest, options: tuple[str, ...]) -> int:
    """The line of the first of the container's arguments that sets one of ``options``,
    else of its command."""
    d, c = manifest.deployment, manifest.container
    for key in ("command", "args"):
        for index, part in enumerate(d.get(*c, key) or []):
            if str(part).split("=", 1)[0] in options:
                return d.line(*c, key, index)
    return d.line(*c, "command")
