"""What a rehearsal is asked to do: the app, the server, the deploy, the load, the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..postgres import PLACEHOLDERS
from .fleet import ServerSpec
from .haproxy import path_problem
from .kube import DEFAULT_READINESS, DEFAULT_STARTUP, PreStop, ProbeSpec
from .report import Thresholds

Strategy = Literal["rolling", "bluegreen", "canary", "hup"]
MigrateAt = Literal["before-new", "after-new"]
Network = Literal["haproxy", "kubernetes", "ingress-nginx"]
NETWORKS: tuple[Network, ...] = ("haproxy", "kubernetes", "ingress-nginx")
MIGRATE_AT: tuple[MigrateAt, ...] = ("before-new", "after-new")
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
    #: The user's k6 script instead of the fast and slow paths, and its iteration function.
    k6_script: Path | None = None
    k6_exec: str = "default"
    #: ``--traffic``: the file, and its requests and users as ``load_traffic`` read them.
    traffic_file: Path | None = None
    traffic: Mapping[str, Any] | None = None
    #: Users who call the rehearsal's session endpoint (when the app has zerodown's
    #: sessions), each with its own cookie jar.
    session_users: int = 10
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
    #: Where the new release's code is, if not in the current directory.
    new_dir: Path | None = None
    #: Rolling: instances above the desired count while it rolls, and below it.
    max_surge: int = 1
    max_unavailable: int = 0
    canary_steps: tuple[int, ...] = (10, 50, 100)
    canary_pause: float = 5.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: Seconds an instance has to turn ready after it started.
    ready_timeout: float = 60.0
    #: What the rehearsal set in the instances' environment over the user's, and why.
    overrides: tuple[str, ...] = ()
    #: ``--database postgres``: a throwaway PostgreSQL for each run; ``--database-url``: yours.
    database: Literal["postgres"] | None = None
    database_url: str | None = None
    #: Commands before release N starts; their ``ZERODOWN_SEED_ROWS`` is ``seed_rows``.
    setup: tuple[str, ...] = ()
    seed_rows: int | None = None
    #: Release N+1's migration, run while N serves: before the first new instance starts
    #: (a pre-deploy job, an init container) or once it is ready.
    migrate: str | None = None
    migrate_at: MigrateAt = "before-new"
    #: The contract step, once no instance of release N is left.
    contract: str | None = None
    #: Feature flags served to every instance (``--flag``), and the new release's own
    #: (``--new-flag``), through ``zerodown.openfeature``.
    flags: Mapping[str, Any] = field(default_factory=dict)
    new_flags: Mapping[str, Any] = field(default_factory=dict)
    #: What carries the load: HAProxy with its checks, or a Service as kube-proxy makes it.
    network: Network = "haproxy"
    #: kubernetes: seconds until an endpoint change reaches the node, a random spread on
    #: top (seeded), the kubelet's probes, the preStop hook, the manifest they came from.
    propagation: float = 1.5
    propagation_spread: float = 0.0
    seed: int = 0
    readiness: ProbeSpec = DEFAULT_READINESS
    startup: ProbeSpec | None = DEFAULT_STARTUP
    pre_stop: PreStop | None = None
    manifest: Path | None = None
    #: What the manifest says that the rehearsal does not model.
    not_modeled: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        """What makes this plan impossible to run, each with what to change."""
        problems = []
        if self.strategy == "hup" and not self.server.reloads:
            problems.append(
                "--strategy hup is the server's own reload of its workers: gunicorn, "
                "granian, uwsgi, or hypercorn with --workers 1 or more"
            )
        if self.server.factory and self.server.kind == "uwsgi":
            problems.append("--factory is not for --server uwsgi: name the app object itself")
        if self.strategy == "hup" and self.new_app not in (None, self.app):
            problems.append("--strategy hup reloads the code on disk; drop --new-app")
        if self.instances < 1:
            problems.append("--instances must be at least 1")
        if not 0 < self.rate <= 5000:
            problems.append("--rate must be between 1 and 5000 requests per second")
        if not 1 <= self.duration <= 3600:
            problems.append("--duration must be between 1 and 3600 seconds")
        for option, path in (("--fast-path", self.fast_path), ("--slow-path", self.slow_path)):
            problem = path_problem(path)
            if problem is not None:
                problems.append(f"{option} {problem}")
        if not 0 <= self.slow_fraction <= 1:
            problems.append("--slow-fraction must be between 0 and 1")
        steps = self.canary_steps
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps):
            problems.append("--canary-steps must be percentages ending in 100, e.g. 10,50,100")
        if list(steps) != sorted(set(steps)):
            problems.append("--canary-steps must increase, e.g. 10,50,100")
        if self.max_surge < 0 or self.max_unavailable < 0:
            problems.append("--max-surge and --max-unavailable must be 0 or more")
        if self.max_surge == 0 and self.max_unavailable == 0:
            problems.append(
                "--max-surge and --max-unavailable cannot both be 0: nothing could roll"
            )
        if self.ready_timeout <= 0:
            problems.append("--ready-timeout must be more than 0 seconds")
        if self.k6_script is not None and self.traffic is not None:
            problems.append("give --k6-script or --traffic, not both")
        if self.k6_script is not None and not self.k6_script.is_file():
            problems.append(f"--k6-script {self.k6_script}: no such file")
        if self.new_dir is not None and not self.new_dir.is_dir():
            problems.append(f"--new-dir {self.new_dir}: no such directory")
        if self.strategy == "hup" and self.new_dir is not None:
            problems.append("--strategy hup reloads the code on disk; drop --new-dir")
        named = sorted(
            {
                "{" + name + "}"
                for value in (*self.env.values(), *self.new_env.values())
                for name in PLACEHOLDERS
                if "{" + name + "}" in value
            }
        )
        if named and self.database is None and self.database_url is None:
            problems.append(
                f"--env uses {', '.join(named)}: give --database postgres or --database-url"
            )
        if self.database is not None and self.database_url is not None:
            problems.append("give --database postgres or --database-url, not both")
        if self.seed_rows is not None and (self.seed_rows < 0 or not self.setup):
            problems.append("--seed-rows is for --setup commands: give --setup, and 0 or more")
        if self.network != "haproxy":
            if self.strategy != "rolling":
                problems.append(
                    f"--network {self.network} rehearses a Deployment's rolling update: drop "
                    f"--strategy {self.strategy}"
                )
            if self.retries:
                problems.append(
                    "--retry is refused with --network kubernetes: kube-proxy does not retry"
                    if self.network == "kubernetes"
                    else "--retry is refused with --network ingress-nginx: its retries are "
                    "nginx's own (proxy_next_upstream error timeout)"
                )
            if self.propagation < 0 or self.propagation_spread < 0:
                problems.append("--propagation and --propagation-spread must be 0 or more")
        if self.contract is not None and self.strategy == "hup":
            problems.append(
                "--contract runs once release N is gone, which --strategy hup never says"
            )
        if self.server.kind == "command" and self.server.server_args:
            problems.append("--server-args is for --server: put them in --command")
        if self.server.kind == "command" and "{port}" not in self.server.command:
            problems.append("--command must contain {port}, where the instance listens")
        return problems
