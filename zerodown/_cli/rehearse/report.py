"""A rehearsal's report: every request, failures by kind, latency, the verdict, as JSON too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .database import DatabaseReport
from .ingress import DIFFERENCE as INGRESS_DIFFERENCE
from .k6 import LoadResult, RequestRecord
from .kube import SERVICE_IP, SERVICE_PORT, PodTimeline
from .machine import saturated_seconds

if TYPE_CHECKING:
    from .plan import RehearsalPlan

#: The JSON Schema of ``zerodown rehearse --json``, shipped in the package.
REPORT_SCHEMA_PATH = Path(__file__).parents[2] / "rehearsal-report.schema.json"
#: Failed requests listed one by one in the JSON report; the rest are counted.
MAX_LISTED_FAILURES = 5000
#: Fewer canary answers than this in a step say nothing about its p99.
MIN_CANARY_SAMPLE = 20
_QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def percentile(ordered: Sequence[float], quantile: float) -> float:
    """The ``quantile`` of sorted values (nearest rank); 0.0 when there are none."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What a deploy must stay within to pass; the exit status follows the verdict."""

    max_failures: int = 0
    #: A path's p99 during the deploy (and after it) fails the deploy when it is more than
    #: this many times its p99 before the deploy...
    max_p99_ratio: float = 1.5
    #: ...and more than this many milliseconds above it: a 15 ms p99 that became 54 ms in a
    #: one-second deploy is noise, not a regression.
    p99_floor_ms: float = 50.0
    #: A path with fewer answered requests than this in either window is shown, not judged.
    min_requests: int = 200
    #: A canary step rolls back when more than this share of the canary's answers fail...
    canary_max_error_rate: float = 0.01
    #: ...or when its p99 exceeds the steady p99 by more than this factor.
    canary_max_p99_ratio: float = 2.0
    #: Seconds a query of the app may wait for a lock (with a database in the rehearsal).
    max_lock_wait: float = 1.0

    def p99_regressed(self, before_ms: float, after_ms: float) -> bool:
        return (
            after_ms > self.max_p99_ratio * before_ms and after_ms > before_ms + self.p99_floor_ms
        )

    def stable_problem(
        self, before: Sequence[RequestRecord], since: Sequence[RequestRecord]
    ) -> str | None:
        """Why the stable release's answers since the canary started call for a rollback:
        its share of failures rose by more than ``canary_max_error_rate``."""
        if not since:
            return None
        failed = sum(record.failed for record in since)
        rate = failed / len(since)
        rate_before = sum(r.failed for r in before) / len(before) if before else 0.0
        if failed and rate - rate_before > self.canary_max_error_rate:
            return (
                f"the stable release failed {failed} of {len(since)} requests since the canary "
                f"started ({rate:.1%}, {rate_before:.1%} before it)"
            )
        return None

    def canary_problem(self, answered: Sequence[RequestRecord], steady_p99: float) -> str | None:
        """Why the canary's answers in one step call for a rollback, or None."""
        if not answered:
            return None
        failed = sum(record.failed for record in answered)
        rate = failed / len(answered)
        if rate > self.canary_max_error_rate:
            return (
                f"{failed} of {len(answered)} canary requests failed ({rate:.1%} > "
                f"{self.canary_max_error_rate:.1%})"
            )
        latencies = sorted(record.latency for record in answered if not record.failed)
        p99 = percentile(latencies, 0.99)
        judged = len(latencies) >= MIN_CANARY_SAMPLE and steady_p99 > 0
        # As the verdict: a 15 ms p99 that became 32 ms is noise, not a slower release.
        floor = steady_p99 + self.p99_floor_ms / 1000
        if judged and p99 > self.canary_max_p99_ratio * steady_p99 and p99 > floor:
            return (
                f"canary p99 {p99 * 1000:.0f}ms > {self.canary_max_p99_ratio:g} x and > "
                f"{self.p99_floor_ms:g}ms above the steady p99 {steady_p99 * 1000:.0f}ms"
            )
        return None


@dataclass(slots=True)
class DeployOutcome:
    """What happened to the deploy itself, apart from the requests."""

    rolled_back: str | None = None
    aborted: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed request or a failed check of the user's script."""

    at: float
    kind: str
    server: str
    path: str
    error: str


#: The windows that latency is measured in; the first is the baseline.
WINDOWS = ("before", "during", "after")


@dataclass(frozen=True, slots=True)
class PathLatency:
    """One path's p99 in each window, and whether the deploy made it regress."""

    name: str
    counts: dict[str, int]
    p99_ms: dict[str, float]
    judged: bool
    regressed: list[str]


@dataclass(frozen=True, slots=True)
class RehearsalReport:
    plan: RehearsalPlan
    result: LoadResult
    load_started: float
    deploy_started: float
    deploy_ended: float
    outcome: DeployOutcome
    events: list[tuple[float, str]]
    #: Each instance's release, by the name the proxy knows it by.
    releases: dict[str, str]
    #: The worker class gunicorn said it ran, when it is gunicorn.
    worker_class: str | None = None
    #: --network kubernetes: each pod's timeline (ready, in the endpoints, deleted...).
    pods: list[PodTimeline] = field(default_factory=list)
    #: The machine's CPU use, a sample a second: (``time.time()``, busy share).
    cpu: list[tuple[float, float]] = field(default_factory=list)
    #: What the database saw, with ``--database`` or ``--database-url``.
    database: DatabaseReport | None = None

    @property
    def deploy_duration(self) -> float:
        return self.deploy_ended - self.deploy_started

    @property
    def load_ended(self) -> float:
        return max((record.ended for record in self.result.records), default=self.load_started)

    def window(self, record: RequestRecord) -> str:
        """``before``, ``during`` or ``after`` the deploy."""
        if record.ended <= self.deploy_started:
            return "before"
        return "during" if record.started < self.deploy_ended else "after"

    def _judged_records(self) -> list[RequestRecord]:
        """The traffic's answered requests; the users' session calls are not the app's."""
        return [r for r in self.result.records if not r.failed and r.scenario == "traffic"]

    def latency(self, window: str) -> dict[str, float]:
        """p50/p95/p99/max in ms of the answered requests in ``window``."""
        chosen = sorted(
            r.latency * 1000 for r in self._judged_records() if self.window(r) == window
        )
        if not chosen:
            return {}
        return {name: round(percentile(chosen, q), 1) for name, q in _QUANTILES}

    def latency_by_path(self) -> list[PathLatency]:
        """Each path's p99 per window, judged where both windows have enough requests."""
        thresholds = self.plan.thresholds
        by_path: dict[str, dict[str, list[float]]] = {}
        for record in self._judged_records():
            windows = by_path.setdefault(
                f"{record.method} {record.label}", {w: [] for w in WINDOWS}
            )
            windows[self.window(record)].append(record.latency * 1000)
        paths = []
        for name, windows in sorted(
            by_path.items(), key=lambda item: -sum(map(len, item[1].values()))
        ):
            counts = {w: len(values) for w, values in windows.items()}
            p99 = {w: round(percentile(sorted(v), 0.99), 1) for w, v in windows.items() if v}
            judged = [
                w
                for w in WINDOWS[1:]
                if min(counts["before"], counts[w]) >= thresholds.min_requests
            ]
            regressed = [w for w in judged if thresholds.p99_regressed(p99["before"], p99[w])]
            paths.append(PathLatency(name, counts, p99, bool(judged), regressed))
        return paths

    def per_release(self) -> dict[str, int]:
        """Answered requests per release; ``none`` for those no instance answered."""
        counts = Counter(self.releases.get(record.server, "none") for record in self.result.records)
        return dict(sorted(counts.items()))

    def failures(self) -> list[Failure]:
        failures = [
            Failure(r.started, r.failure_kind, r.server, f"{r.method} {r.path}", r.error)
            for r in self.result.failed
        ]
        failures += [
            Failure(c.at, f"check:{c.name}", c.server, c.request, "")
            for c in self.result.check_failures
        ]
        return sorted(failures, key=lambda failure: failure.at)

    def failures_by_release(self) -> dict[str, dict[str, Any]]:
        """Per release: how many failed, of which kinds, from when to when."""
        grouped: dict[str, list[Failure]] = {}
        for failure in self.failures():
            grouped.setdefault(self.releases.get(failure.server, "none"), []).append(failure)
        return {
            release: {
                "failed": len(failures),
                "kinds": dict(sorted(Counter(f.kind for f in failures).items())),
                "first_at_s": self._offset(failures[0].at),
                "last_at_s": self._offset(failures[-1].at),
            }
            for release, failures in sorted(grouped.items())
        }

    def sessions(self) -> dict[str, Any] | None:
        """What happened to the users' sessions, by release and instance; None without users."""
        calls = self.result.session_calls
        if not calls:
            return None
        losses = self.result.session_losses()
        by_release: dict[str, dict[str, Any]] = {}
        for loss in losses:
            release = by_release.setdefault(
                self.releases.get(loss.server, "none"),
                {"sessions_lost": 0, "writes_lost": 0, "instances": {}, "first_at_s": None},
            )
            key = "sessions_lost" if loss.kind == "session" else "writes_lost"
            release[key] += 1
            instance = release["instances"].setdefault(
                loss.server or "none", {"sessions_lost": 0, "writes_lost": 0}
            )
            instance[key] += 1
            if release["first_at_s"] is None:
                release["first_at_s"] = self._offset(loss.at)
        lost_users = {loss.visitor for loss in losses if loss.kind == "session"}
        return {
            "users": len({record.visitor for record in calls}),
            "calls": len(calls),
            "users_logged_out": len(lost_users),
            "sessions_lost": sum(loss.kind == "session" for loss in losses),
            "writes_lost": sum(loss.kind == "write" for loss in losses),
            "by_release": dict(sorted(by_release.items())),
            "examples": [
                {
                    "at_s": self._offset(loss.at),
                    "server": loss.server or None,
                    "kind": loss.kind,
                    "detail": loss.detail,
                }
                for loss in losses[:20]
            ],
        }

    def machine_notes(self) -> list[str]:
        """Signs that the machine, not the app, limited the rehearsal."""
        notes = []
        if self.result.dropped:
            notes.append(
                f"k6 could not start {self.result.dropped} iterations in time: this machine "
                f"could not send --rate {self.plan.rate}; try a lower --rate"
            )
        saturated = saturated_seconds(self.cpu, self.deploy_started, self.deploy_ended)
        if saturated:
            notes.append(
                f"every CPU was busy for {saturated}s of the deploy (instances starting while "
                f"the load runs): latency then measures this machine as much as the app; "
                f"try a lower --rate"
            )
        return notes

    def verdict(self) -> list[str]:
        """Why the deploy fails its thresholds; empty when it passes."""
        thresholds = self.plan.thresholds
        reasons = []
        failures = self.failures()
        if len(failures) > thresholds.max_failures:
            kinds = ", ".join(
                f"{k} {n}" for k, n in sorted(Counter(f.kind for f in failures).items())
            )
            releases = "; ".join(
                f"{release} {entry['failed']} from {entry['first_at_s']:.1f}s"
                for release, entry in self.failures_by_release().items()
            )
            reasons.append(
                f"{len(failures)} failed ({kinds}); at most {thresholds.max_failures} allowed; "
                f"by release: {releases}"
            )
        sessions = self.sessions()
        if sessions and (sessions["sessions_lost"] or sessions["writes_lost"]):
            where = "; ".join(
                f"{release} from {entry['first_at_s']:.1f}s"
                for release, entry in sessions["by_release"].items()
            )
            reasons.append(
                f"{sessions['users_logged_out']} of {sessions['users']} users were logged out "
                f"({sessions['sessions_lost']} sessions lost, {sessions['writes_lost']} writes "
                f"lost) by {where}"
            )
        if self.result.thresholds_crossed:
            reasons.append(
                "the k6 script's thresholds were crossed: "
                + "; ".join(self.result.thresholds_crossed)
            )
        for path in self.latency_by_path():
            for window in path.regressed:
                reasons.append(
                    f"{path.name}: p99 {window} the deploy {path.p99_ms[window]:.0f}ms > "
                    f"{thresholds.max_p99_ratio:g} x and > {thresholds.p99_floor_ms:g}ms above "
                    f"{path.p99_ms['before']:.0f}ms before it"
                )
        longest = max(self._app_lock_waits(), key=lambda wait: wait.seconds, default=None)
        if longest is not None and longest.seconds > thresholds.max_lock_wait:
            reasons.append(
                f"{longest.application_name} waited {longest.seconds:.1f}s for a lock "
                f"at {self._offset(longest.at):.1f}s"
                + (f", behind {', '.join(longest.blocked_by)}" if longest.blocked_by else "")
                + f"; at most {thresholds.max_lock_wait:g}s allowed (--max-lock-wait)"
            )
        if self.outcome.rolled_back:
            reasons.append(f"the canary was rolled back {self.outcome.rolled_back}")
        if self.outcome.aborted:
            # The first line says what happened; lines indented under it are its reasons.
            first, *rest = self.outcome.aborted.splitlines()
            why = "; ".join(line.strip() for line in rest if line.startswith("  "))
            reasons.append(f"the deploy did not complete: {first} {why}".rstrip())
        if self.deploy_ended > self.load_ended + 0.5:
            reasons.append(
                f"the deploy outlasted the load by {self.deploy_ended - self.load_ended:.1f}s; "
                f"raise --duration"
            )
        return reasons

    @property
    def passed(self) -> bool:
        return not self.verdict()

    def _offset(self, moment: float) -> float:
        return round(moment - self.load_started, 3)

    def phase_of(self, failure: Failure) -> str:
        """Where in a pod's termination a failure happened: before its endpoint was
        removed, between that and its listener closing, or during its drain. A failed
        connection names no pod (the client saw only the Service's address): the phase is
        that of a pod terminating then."""
        pods = {pod.name: pod for pod in self.pods}
        candidates = [pods[failure.server]] if failure.server in pods else list(pods.values())
        for pod in candidates:
            phase = pod.phase(failure.at)
            if phase is not None:
                return phase
        return "not during a termination"

    def failures_by_phase(self) -> dict[str, dict[str, int]]:
        """Per phase of a termination, the failures by kind (``--network kubernetes``)."""
        grouped: dict[str, Counter[str]] = {}
        for failure in self.failures():
            grouped.setdefault(self.phase_of(failure), Counter())[failure.kind] += 1
        return {phase: dict(sorted(kinds.items())) for phase, kinds in sorted(grouped.items())}

    def _network_json(self) -> dict[str, Any]:
        plan = self.plan
        if plan.network == "haproxy":
            return {"kind": plan.network}

        def at(moment: float | None) -> float | None:
            return None if moment is None else self._offset(moment)

        return {
            "kind": plan.network,
            "service": f"{SERVICE_IP}:{SERVICE_PORT}",
            "propagation_s": plan.propagation,
            "propagation_spread_s": plan.propagation_spread,
            "seed": plan.seed,
            "manifest": None if plan.manifest is None else str(plan.manifest),
            "not_modeled": self._not_modeled(),
            "pods": [
                {
                    "name": pod.name,
                    "release": self.releases.get(pod.name),
                    "ready_at_s": at(pod.ready_at),
                    "in_endpoints_at_s": at(pod.in_endpoints_at),
                    "deleted_at_s": at(pod.deleted_at),
                    "endpoint_removed_at_s": at(pod.endpoint_removed_at),
                    "listener_closed_at_s": at(pod.listener_closed_at),
                    "exited_at_s": at(pod.exited_at),
                }
                for pod in self.pods
            ],
            "failures_by_phase": self.failures_by_phase(),
        }

    def _app_lock_waits(self) -> list[Any]:
        return [] if self.database is None else self.database.app_waits(self.releases)

    def database_causes(self) -> list[str]:
        """Each release's failed requests beside the errors PostgreSQL logged for its
        sessions, and the migration's statement that came before them."""
        if self.database is None:
            return []
        errors: dict[str, list[Any]] = {}
        for error in self.database.errors:
            errors.setdefault(error.release, []).append(error)
        by_release = self.failures_by_release()
        causes = []
        for release, found in sorted(errors.items()):
            first = min(error.first_at for error in found)
            reported = " and ".join(
                f"`{error.message}` ({error.state_code}) {error.count} times" for error in found
            )
            failed = by_release.get(release, {"kinds": {}, "first_at_s": 0.0})
            statuses = ", ".join(
                f"{kind.removeprefix('http_')} to {n}"
                for kind, n in failed["kinds"].items()
                if not kind.startswith("check:")
            )
            said = (
                f"release {release} answered {statuses} requests from "
                f"{failed['first_at_s']:.1f}s, while PostgreSQL reported {reported}"
                if statuses
                else f"PostgreSQL reported {reported} to release {release}"
            )
            cause = self.database.cause_before(first)
            if cause is not None:
                at, step, statement = cause
                said += (
                    f", after the {step} step's `{_short(statement)}` at {self._offset(at):.1f}s"
                )
            causes.append(said)
        return causes

    def requests_during_waits(self) -> int:
        """Answered requests that overlapped an app session's lock wait and took longer than
        the slowest tenth of those before the deploy: the ones that waited."""
        waits = [w for w in self._app_lock_waits() if w.seconds > 0.1]
        if not waits:
            return 0
        steady = sorted(
            r.ended - r.started
            for r in self.result.records
            if r.ended <= self.deploy_started and not r.failed
        )
        slow = percentile(steady, 0.9)
        return sum(
            1
            for record in self.result.records
            if record.ended - record.started > slow
            and any(record.started < w.at + w.seconds and record.ended > w.at for w in waits)
        )

    def _database_json(self) -> dict[str, Any] | None:
        database = self.database
        if database is None:
            return None
        waits = self._app_lock_waits()
        return {
            "throwaway": database.throwaway,
            "steps": [
                {
                    "step": step.name,
                    "command": step.command,
                    "started_s": self._offset(step.started),
                    "ended_s": self._offset(step.ended),
                    "exit_status": step.returncode,
                }
                for step in database.steps
            ],
            "statements": [
                {"at_s": self._offset(at), "step": step, "statement": statement}
                for at, step, statement in database.statements
            ],
            "errors": [
                {
                    "release": error.release,
                    "sqlstate": error.state_code,
                    "message": error.message,
                    "count": error.count,
                    "first_at_s": self._offset(error.first_at),
                    "last_at_s": self._offset(error.last_at),
                }
                for error in database.errors
            ],
            "lock_waits": [
                {
                    "at_s": self._offset(wait.at),
                    "seconds": round(wait.seconds, 3),
                    "session": wait.application_name,
                    "release": self.releases.get(wait.application_name),
                    "statement": wait.statement,
                    "blocked_by": list(wait.blocked_by),
                }
                for wait in database.lock_waits
            ],
            "longest_app_lock_wait_s": round(max((w.seconds for w in waits), default=0.0), 3),
            "app_sessions_that_waited": len(waits),
            "requests_that_waited": self.requests_during_waits(),
            "rewrites": [
                {"at_s": self._offset(at), "table": table} for at, table in database.rewrites
            ],
            "sampled_statements": [
                {
                    "at_s": self._offset(statement.at),
                    "seconds": round(statement.seconds, 3),
                    "step": statement.step,
                    "statement": statement.statement,
                    "locks": list(statement.locks),
                    "waited_for_a_lock": statement.waited,
                    "app_sessions_blocked": statement.blocked,
                }
                for statement in database.sampled
            ],
            "samples": database.samples,
            "causes": self.database_causes(),
            "problems": database.problems,
        }

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        failures = self.failures()
        return {
            "zerodown": not plan.disabled,
            "app": plan.app,
            "new_app": plan.new_app or plan.app,
            "new_dir": None if plan.new_dir is None else str(plan.new_dir),
            "server": plan.server.describe(self.worker_class),
            "worker_class": self.worker_class,
            "strategy": plan.strategy,
            "instances": plan.instances,
            "settings_overridden": list(plan.overrides),
            "flags": {"every_instance": dict(plan.flags), "new_release": dict(plan.new_flags)},
            "load": {
                "rate": plan.rate,
                "rate_unit": "iterations/s" if plan.k6_script else "requests/s",
                "duration_s": plan.duration,
                "k6_script": None if plan.k6_script is None else str(plan.k6_script),
                "k6_exec": plan.k6_exec,
                "traffic": None if plan.traffic_file is None else str(plan.traffic_file),
                "fast_path": plan.fast_path,
                "slow_path": plan.slow_path,
                "slow_fraction": plan.slow_fraction,
                "retries": plan.retries,
                "session_users": plan.session_users,
            },
            "requests": len(self.result.records),
            "failed": len(failures),
            "not_sent": self.result.dropped,
            "failures_by_kind": dict(sorted(Counter(f.kind for f in failures).items())),
            "failures_by_release": self.failures_by_release(),
            "checks_failed_unattributed": max(
                0, self.result.checks_failed - len(self.result.check_failures)
            ),
            "k6_thresholds_crossed": list(self.result.thresholds_crossed),
            "per_release": self.per_release(),
            "sessions": self.sessions(),
            "latency_ms": {
                "steady": self.latency("before"),
                "during_deploy": self.latency("during"),
                "after_deploy": self.latency("after"),
                "by_path": [
                    {
                        "path": path.name,
                        "requests": path.counts,
                        "p99": path.p99_ms,
                        "judged": path.judged,
                        "regressed": path.regressed,
                    }
                    for path in self.latency_by_path()
                ],
            },
            "machine": self.machine_notes(),
            "network": self._network_json(),
            "database": self._database_json(),
            "deploy": {
                "started_s": self._offset(self.deploy_started),
                "duration_s": round(self.deploy_duration, 3),
                "rolled_back": self.outcome.rolled_back,
                "aborted": self.outcome.aborted,
                "notes": self.outcome.notes,
                "events": [{"at_s": self._offset(at), "event": text} for at, text in self.events],
            },
            "failed_requests": [
                {
                    "at_s": self._offset(failure.at),
                    "path": failure.path,
                    "kind": failure.kind,
                    "server": failure.server or None,
                    "release": self.releases.get(failure.server),
                    "error": failure.error or None,
                }
                for failure in failures[:MAX_LISTED_FAILURES]
            ],
            "failed_requests_not_listed": max(0, len(failures) - MAX_LISTED_FAILURES),
            "thresholds": {
                "max_failures": plan.thresholds.max_failures,
                "max_p99_ratio": plan.thresholds.max_p99_ratio,
                "p99_floor_ms": plan.thresholds.p99_floor_ms,
                "min_requests": plan.thresholds.min_requests,
                "max_lock_wait_s": plan.thresholds.max_lock_wait,
            },
            "verdict": {"passed": self.passed, "reasons": self.verdict()},
        }

    def title(self) -> str:
        label = "without zerodown (ZERODOWN_DISABLED=1)" if self.plan.disabled else "with zerodown"
        plan = self.plan
        return (
            f"{plan.strategy} deploy of {plan.new_app or plan.app}, {plan.instances} "
            f"instance(s) under {plan.server.describe(self.worker_class)}, {label}"
        )

    def render(self) -> str:
        lines = [self.title(), f"  {self.result.describe()}"]
        lines += [f"  setting: {override}" for override in self.plan.overrides]
        lines.append(f"  deploy took {self.deploy_duration:.1f}s")
        lines += [f"  {note}" for note in self.outcome.notes]
        for name, window in (("before", "before"), ("during deploy", "during"), ("after", "after")):
            latency = self.latency(window)
            shown = "  ".join(f"{key} {value:.0f}ms" for key, value in latency.items())
            lines.append(f"  latency {name}: {shown or 'no requests'}")
        unjudged = [path.name for path in self.latency_by_path() if not path.judged]
        if unjudged:
            shown = ", ".join(unjudged[:5]) + (
                f" and {len(unjudged) - 5} more" if len(unjudged) > 5 else ""
            )
            lines.append(
                f"  latency not judged (fewer than {self.plan.thresholds.min_requests} requests "
                f"in a window): {shown}"
            )
        answered = ", ".join(f"{release} {n:,}" for release, n in self.per_release().items())
        lines.append(f"  answered by release: {answered}")
        for release, entry in self.failures_by_release().items():
            kinds = ", ".join(f"{kind} {n}" for kind, n in entry["kinds"].items())
            lines.append(
                f"  release {release} failed {entry['failed']} ({kinds}) from "
                f"{entry['first_at_s']:.1f}s to {entry['last_at_s']:.1f}s"
            )
        lines += self._failure_lines()
        unattributed = self.result.checks_failed - len(self.result.check_failures)
        if unattributed > 0:
            lines.append(f"  {unattributed} failed checks could not be attributed to an instance")
        lines += [f"  machine: {note}" for note in self.machine_notes()]
        lines += self._network_lines()
        lines += self._database_lines()
        reasons = self.verdict()
        lines.append(f"  verdict: {'PASS' if not reasons else 'FAIL'}")
        lines += [f"    - {reason}" for reason in reasons]
        return "\n".join(lines)

    def _not_modeled(self) -> list[str]:
        ingress = [INGRESS_DIFFERENCE] if self.plan.network == "ingress-nginx" else []
        return [*ingress, *self.plan.not_modeled]

    def _network_lines(self) -> list[str]:
        plan = self.plan
        if plan.network == "haproxy":
            return []
        spread = f" + up to {plan.propagation_spread:g}s" if plan.propagation_spread else ""
        front = (
            "nginx as ingress-nginx configures it, to the endpoints of "
            if plan.network == "ingress-nginx"
            else ""
        )
        lines = [
            f"  network: {front}a Service at {SERVICE_IP}:{SERVICE_PORT} as kube-proxy's "
            f"iptables make it, endpoint changes after {plan.propagation:g}s{spread}"
        ]
        for pod in self.pods:
            if pod.deleted_at is None:
                continue
            marks = [
                (label, moment)
                for label, moment in (
                    ("deleted", pod.deleted_at),
                    ("endpoint removed", pod.endpoint_removed_at),
                    ("listener closed", pod.listener_closed_at),
                    ("exited", pod.exited_at),
                )
                if moment is not None
            ]
            shown = ", ".join(f"{label} {self._offset(moment):.1f}s" for label, moment in marks)
            lines.append(f"  network: {pod.name} {shown}")
        for phase, kinds in self.failures_by_phase().items():
            counted = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
            lines.append(f"  failed {phase}: {counted}")
        lines += [f"  network: {note}" for note in self._not_modeled()]
        return lines

    def _database_lines(self) -> list[str]:
        database = self.database
        if database is None:
            return []
        lines = [
            f"  database: {step.name} `{_short(step.command)}` from "
            f"{self._offset(step.started):.1f}s to {self._offset(step.ended):.1f}s"
            for step in database.steps
        ]
        lines += [
            f"  database: {step} ran `{_short(statement)}` at {self._offset(at):.1f}s"
            for at, step, statement in database.statements
            if step != "setup"
        ]
        lines += [
            f"  database: {sampled.step} held {', '.join(sampled.locks) or 'no table lock'} for "
            f"{sampled.seconds:.1f}s from {self._offset(sampled.at):.1f}s running "
            f"`{_short(sampled.statement)}`"
            + (", itself waiting for a lock" if sampled.waited else "")
            + (f"; {sampled.blocked} app sessions waited behind it" if sampled.blocked else "")
            for sampled in database.sampled
            if sampled.step != "setup"
        ]
        lines += [
            f"  database: rewrote {t} at {self._offset(at):.1f}s" for at, t in database.rewrites
        ]
        waits = self._app_lock_waits()
        if waits:
            longest = max(waits, key=lambda wait: wait.seconds)
            lines.append(
                f"  database: {len(waits)} app sessions waited for a lock, the longest "
                f"{longest.seconds:.2f}s at {self._offset(longest.at):.1f}s"
                + (f" behind {', '.join(longest.blocked_by)}" if longest.blocked_by else "")
                + f" ({_short(longest.statement)}); "
                f"{self.requests_during_waits()} requests were slow while they waited"
            )
        lines += [f"  database: {cause}" for cause in self.database_causes()]
        lines += [f"  database: {problem}" for problem in database.problems]
        return lines

    def _failure_lines(self, shown: int = 15) -> list[str]:
        """The failures, grouped by kind and server, with when they happened."""
        groups: dict[tuple[str, str], list[Failure]] = {}
        for failure in self.failures():
            groups.setdefault((failure.kind, failure.server or "-"), []).append(failure)
        lines = []
        for (kind, server), failures in sorted(groups.items(), key=lambda item: -len(item[1])):
            first, last = self._offset(failures[0].at), self._offset(failures[-1].at)
            lines.append(
                f"  failed: {len(failures):5d} x {kind:<9} server {server:<6} "
                f"at {first:.1f}s..{last:.1f}s, first: {failures[0].error or failures[0].path}"
            )
        if len(lines) > shown:
            lines = [*lines[:shown], f"  ... {len(lines) - shown} more groups in --json"]
        return lines


def render_side_by_side(reports: Sequence[RehearsalReport]) -> str:
    """The same rehearsal with and without zerodown, one column each."""
    columns = [("with zerodown" if not r.plan.disabled else "without zerodown", r) for r in reports]
    rows: list[tuple[str, list[str]]] = [
        ("requests", [f"{len(r.result.records):,}" for _, r in columns]),
        ("failed", [f"{len(r.failures()):,}" for _, r in columns]),
    ]
    kinds = sorted({kind for _, r in columns for kind in r.result.failures_by_kind})
    rows += [
        (f"  {kind}", [str(r.result.failures_by_kind.get(kind, 0)) for _, r in columns])
        for kind in kinds
    ]
    for name, window in (("before", "before"), ("deploy", "during")):
        for key in ("p50", "p99", "max"):
            values = [r.latency(window).get(key) for _, r in columns]
            rows.append((f"{key} {name}", ["-" if v is None else f"{v:.0f}ms" for v in values]))
    sessions = [r.sessions() for _, r in columns]
    if any(sessions):
        rows.append(
            (
                "users logged out",
                ["-" if s is None else str(s["users_logged_out"]) for s in sessions],
            )
        )
    rows.append(("deploy took", [f"{r.deploy_duration:.1f}s" for _, r in columns]))
    rows.append(("verdict", ["PASS" if r.passed else "FAIL" for _, r in columns]))
    width = max(len(label) for label, _ in columns) + 2
    names = max(16, *(len(name) + 2 for name, _ in rows))
    lines = [f"{'':<{names}}" + "".join(f"{label:>{width}}" for label, _ in columns)]
    lines += [
        f"{name:<{names}}" + "".join(f"{value:>{width}}" for value in values)
        for name, values in rows
    ]
    return "\n".join(lines)


def report_document(reports: Sequence[RehearsalReport]) -> dict[str, Any]:
    """The ``--json`` document: the verdict of the first run (with zerodown), every run."""
    return {
        "schema": REPORT_SCHEMA_PATH.name,
        "passed": reports[0].passed,
        "runs": [report.to_json() for report in reports],
    }


def _short(text: str, limit: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
