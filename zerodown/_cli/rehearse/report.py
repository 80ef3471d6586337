"""A rehearsal's report: every request, failures by kind, latency, the verdict, as JSON too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .k6 import LoadResult, RequestRecord

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
    #: p99 latency during the deploy at most this many times the steady p99.
    max_p99_ratio: float = 1.5
    #: A canary step rolls back when more than this share of the canary's answers fail...
    canary_max_error_rate: float = 0.01
    #: ...or when its p99 exceeds the steady p99 by more than this factor.
    canary_max_p99_ratio: float = 2.0

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
        if judged and p99 > self.canary_max_p99_ratio * steady_p99:
            return (
                f"canary p99 {p99 * 1000:.0f}ms > {self.canary_max_p99_ratio:g} x "
                f"steady p99 {steady_p99 * 1000:.0f}ms"
            )
        return None


@dataclass(slots=True)
class DeployOutcome:
    """What happened to the deploy itself, apart from the requests."""

    rolled_back: str | None = None
    aborted: str | None = None
    notes: list[str] = field(default_factory=list)


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

    @property
    def deploy_duration(self) -> float:
        return self.deploy_ended - self.deploy_started

    @property
    def load_ended(self) -> float:
        return max((record.ended for record in self.result.records), default=self.load_started)

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
        return {name: round(percentile(chosen, q), 1) for name, q in _QUANTILES}

    def per_release(self) -> dict[str, int]:
        """Answered requests per release; ``none`` for those no instance answered."""
        counts = Counter(self.releases.get(record.server, "none") for record in self.result.records)
        return dict(sorted(counts.items()))

    def verdict(self) -> list[str]:
        """Why the deploy fails its thresholds; empty when it passes."""
        thresholds = self.plan.thresholds
        reasons = []
        failed = len(self.result.failed)
        if failed > thresholds.max_failures:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.result.failures_by_kind.items()))
            reasons.append(
                f"{failed} failed requests ({kinds}); at most {thresholds.max_failures} allowed"
            )
        steady = self.latency(during_deploy=False).get("p99")
        during = self.latency(during_deploy=True).get("p99")
        if steady and during and during > thresholds.max_p99_ratio * steady:
            reasons.append(
                f"p99 during the deploy {during:.0f}ms > {thresholds.max_p99_ratio:g} x steady "
                f"p99 {steady:.0f}ms"
            )
        if self.outcome.rolled_back:
            reasons.append(f"the canary was rolled back {self.outcome.rolled_back}")
        if self.outcome.aborted:
            reasons.append(f"the deploy did not complete: {self.outcome.aborted.splitlines()[0]}")
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

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        failed = self.result.failed
        return {
            "zerodown": not plan.disabled,
            "app": plan.app,
            "new_app": plan.new_app or plan.app,
            "server": plan.server.describe(),
            "strategy": plan.strategy,
            "instances": plan.instances,
            "load": {
                "rate": plan.rate,
                "duration_s": plan.duration,
                "fast_path": plan.fast_path,
                "slow_path": plan.slow_path,
                "slow_fraction": plan.slow_fraction,
                "retries": plan.retries,
            },
            "requests": len(self.result.records),
            "failed": len(failed),
            "not_sent": self.result.dropped,
            "failures_by_kind": dict(sorted(self.result.failures_by_kind.items())),
            "per_release": self.per_release(),
            "latency_ms": {
                "steady": self.latency(during_deploy=False),
                "during_deploy": self.latency(during_deploy=True),
            },
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
                    "at_s": self._offset(record.started),
                    "path": record.path,
                    "kind": record.failure_kind,
                    "server": record.server or None,
                    "error": record.error or None,
                }
                for record in failed[:MAX_LISTED_FAILURES]
            ],
            "failed_requests_not_listed": max(0, len(failed) - MAX_LISTED_FAILURES),
            "thresholds": {
                "max_failures": plan.thresholds.max_failures,
                "max_p99_ratio": plan.thresholds.max_p99_ratio,
            },
            "verdict": {"passed": self.passed, "reasons": self.verdict()},
        }

    def title(self) -> str:
        label = "without zerodown (ZERODOWN_DISABLED=1)" if self.plan.disabled else "with zerodown"
        plan = self.plan
        return (
            f"{plan.strategy} deploy of {plan.new_app or plan.app}, {plan.instances} "
            f"instance(s) under {plan.server.describe()}, {label}"
        )

    def render(self) -> str:
        lines = [self.title(), f"  {self.result.describe()}"]
        lines.append(f"  deploy took {self.deploy_duration:.1f}s")
        lines += [f"  {note}" for note in self.outcome.notes]
        for name, during in (("steady", False), ("during deploy", True)):
            latency = self.latency(during_deploy=during)
            shown = "  ".join(f"{key} {value:.0f}ms" for key, value in latency.items())
            lines.append(f"  latency {name}: {shown or 'no requests'}")
        answered = ", ".join(f"{release} {n:,}" for release, n in self.per_release().items())
        lines.append(f"  answered by release: {answered}")
        lines += self._failure_lines()
        reasons = self.verdict()
        lines.append(f"  verdict: {'PASS' if not reasons else 'FAIL'}")
        lines += [f"    - {reason}" for reason in reasons]
        return "\n".join(lines)

    def _failure_lines(self, shown: int = 15) -> list[str]:
        """The failed requests, grouped by kind and server, with when they happened."""
        groups: dict[tuple[str, str], list[RequestRecord]] = {}
        for record in self.result.failed:
            groups.setdefault((record.failure_kind, record.server or "-"), []).append(record)
        lines = []
        for (kind, server), records in sorted(groups.items(), key=lambda item: -len(item[1])):
            first, last = self._offset(records[0].started), self._offset(records[-1].started)
            lines.append(
                f"  failed: {len(records):5d} x {kind:<9} server {server:<6} "
                f"at {first:.1f}s..{last:.1f}s, first: {records[0].error or records[0].path}"
            )
        if len(lines) > shown:
            lines = [*lines[:shown], f"  ... {len(lines) - shown} more groups in --json"]
        return lines


def render_side_by_side(reports: Sequence[RehearsalReport]) -> str:
    """The same rehearsal with and without zerodown, one column each."""
    columns = [("with zerodown" if not r.plan.disabled else "without zerodown", r) for r in reports]
    rows: list[tuple[str, list[str]]] = [
        ("requests", [f"{len(r.result.records):,}" for _, r in columns]),
        ("failed", [f"{len(r.result.failed):,}" for _, r in columns]),
    ]
    kinds = sorted({kind for _, r in columns for kind in r.result.failures_by_kind})
    rows += [
        (f"  {kind}", [str(r.result.failures_by_kind.get(kind, 0)) for _, r in columns])
        for kind in kinds
    ]
    for name, during in (("steady", False), ("deploy", True)):
        for key in ("p50", "p99", "max"):
            values = [r.latency(during_deploy=during).get(key) for _, r in columns]
            rows.append((f"{key} {name}", ["-" if v is None else f"{v:.0f}ms" for v in values]))
    rows.append(("deploy took", [f"{r.deploy_duration:.1f}s" for _, r in columns]))
    rows.append(("verdict", ["PASS" if r.passed else "FAIL" for _, r in columns]))
    width = max(len(label) for label, _ in columns) + 2
    lines = [f"{'':<16}" + "".join(f"{label:>{width}}" for label, _ in columns)]
    lines += [
        f"{name:<16}" + "".join(f"{value:>{width}}" for value in values) for name, values in rows
    ]
    return "\n".join(lines)


def report_document(reports: Sequence[RehearsalReport]) -> dict[str, Any]:
    """The ``--json`` document: the verdict of the first run (with zerodown), every run."""
    return {
        "schema": REPORT_SCHEMA_PATH.name,
        "passed": reports[0].passed,
        "runs": [report.to_json() for report in reports],
    }
