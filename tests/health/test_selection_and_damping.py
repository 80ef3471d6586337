"""The pure parts of health: which checks a probe runs, and how flapping is damped.

No middleware and no server: :func:`checks_for` is what both middleware ask, and the
registry's damping is driven here by a check that returns what the test scripts.
"""

from __future__ import annotations

import pytest

from zerodown import Health, Lifecycle
from zerodown._probes import Endpoint, ProbeRequest, checks_for
from zerodown.health import Check


@pytest.fixture
def health() -> Health:
    registry = Health(process_checks=False)
    registry.add(Check("db", lambda: None))
    registry.add(Check("migrations", lambda: None, groups="startup"))
    registry.add(Check("loop", lambda: None, groups="liveness", component_type="system"))
    registry.add(Check("cache", lambda: None, groups=("readiness", "liveness")))
    return registry


def names(checks: list[Check] | None) -> list[str] | None:
    return None if checks is None else sorted(check.name for check in checks)


def ask(
    health: Health, lifecycle: Lifecycle, endpoint: Endpoint, **fields: str
) -> list[str] | None:
    request = ProbeRequest(endpoint, fields.pop("method", "GET"), **fields)  # type: ignore[arg-type]
    return names(checks_for(request, lifecycle, health))


def test_readiness_runs_nothing_while_starting_and_the_startup_checks_until_they_passed(
    health: Health,
) -> None:
    lifecycle = Lifecycle()
    assert ask(health, lifecycle, Endpoint.READYZ) == []
    lifecycle.mark_ready()
    assert ask(health, lifecycle, Endpoint.READYZ) == ["cache", "db", "migrations"]
    assert ask(health, lifecycle, Endpoint.STARTUPZ) == ["migrations"]
    report = health.run_sync(health.select({"startup"}))
    health.note_startup(report)
    assert ask(health, lifecycle, Endpoint.READYZ) == ["cache", "db"]
    assert ask(health, lifecycle, Endpoint.STARTUPZ) == []


def test_a_draining_process_asks_no_dependency_for_readiness(health: Health) -> None:
    lifecycle = Lifecycle(shutdown_delay=0)
    lifecycle.mark_ready()
    lifecycle.start_draining("test")
    assert ask(health, lifecycle, Endpoint.READYZ) == []
    assert ask(health, lifecycle, Endpoint.LIVEZ) == ["cache", "loop"]


def test_exclude_one_check_and_the_methods_that_run_none(health: Health) -> None:
    lifecycle = Lifecycle()
    lifecycle.mark_ready()
    assert ask(health, lifecycle, Endpoint.LIVEZ, query_string="exclude=cache") == ["loop"]
    assert ask(health, lifecycle, Endpoint.READYZ, check_name="db") == ["db"]
    # A check of another group is not this probe's: the middleware answers 404.
    assert ask(health, lifecycle, Endpoint.LIVEZ, check_name="db") is None
    assert ask(health, lifecycle, Endpoint.READYZ, method="POST") == []
    assert ask(health, lifecycle, Endpoint.PRESTOP) == []


def test_flapping_is_damped_by_the_thresholds() -> None:
    outcomes = iter([True, False, False, True, False, False, False, True, True, True])
    health = Health(process_checks=False)
    check = Check(
        "db",
        lambda: next(outcomes),
        failure_threshold=3,
        success_threshold=2,
        cache_ttl=0,
        max_backoff=0,
    )
    health.add(check)
    assert [health.run_sync([check]).status for _ in range(10)] == [
        "pass",
        "warn",  # failing, not yet for 3 runs in a row
        "warn",
        "pass",
        "warn",
        "warn",
        "fail",  # the third failure in a row
        "fail",  # one success is not enough
        "pass",
        "pass",
    ]


def test_a_timed_out_run_reports_its_timeout_as_its_duration() -> None:
    health = Health(process_checks=False)
    check = Check("slow", lambda: __import__("time").sleep(1), timeout=0.05)
    health.add(check)
    ((_, result),) = health.run_sync([check]).results
    assert result.output == "timed out after 0.05s"
    assert result.duration == pytest.approx(0.05)
