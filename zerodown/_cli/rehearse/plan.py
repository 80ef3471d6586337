"""What a rehearsal is asked to do: the app, the server, the deploy, the load, the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .fleet import ServerSpec
from .haproxy import path_problem
from .report import Thresholds

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
        if self.server.kind == "command" and "{port}" not in self.server.command:
            problems.append("--command must contain {port}, where the instance listens")
        return problems
