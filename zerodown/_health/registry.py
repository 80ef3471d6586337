"""The registry of a process's checks: registering, selecting, running, refreshing."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar, Unpack

from .._errors import ConfigurationError
from .._events import Subscribers
from .model import LIVENESS, STARTUP, Check, CheckFunction, CheckOptions, CheckResult, Report
from .runs import CheckState, Executor, Run

if TYPE_CHECKING:
    from .._probes import ProbeAccess

logger = logging.getLogger("zerodown")
_F = TypeVar("_F", bound=CheckFunction)


class Health:
    """The checks of a process: registering them, selecting and running them for a probe.

    ``process_checks`` lets the middleware add the default liveness check of its kind
    (event-loop lag for ASGI, stuck worker threads for WSGI).

    ``version``, ``release_id``, ``service_id``, ``token`` and ``details_for_loopback`` are
    deprecated here: they describe the probes, not the checks, and belong to
    :class:`zerodown.ProbeAccess`. Given here, they still reach the middleware that uses
    this registry.
    """

    def __init__(
        self,
        *,
        process_checks: bool = True,
        version: str | None = None,
        release_id: str | None = None,
        service_id: str | None = None,
        token: str | None = None,
        details_for_loopback: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        #: What probes show and to whom, when given the deprecated way (else None).
        self.probe_access: ProbeAccess | None = None
        given = {
            "version": version,
            "release_id": release_id,
            "service_id": service_id,
            "token": token,
        }
        if any(given.values()) or details_for_loopback or environ is not None:
            warnings.warn(
                "Health(version=, release_id=, service_id=, token=, details_for_loopback=) is "
                "deprecated; pass zerodown.ProbeAccess(...) to the middleware as probe_access=",
                DeprecationWarning,
                stacklevel=2,
            )
            from .._probes import ProbeAccess  # the probes import this module

            self.probe_access = ProbeAccess.load(
                environ=environ,
                details_for_loopback=details_for_loopback,
                **{key: value for key, value in given.items() if value},
            )
        self.process_checks = process_checks
        #: Told after each check is registered (the probe routes follow).
        self.added = Subscribers("check added")
        self._executor = Executor()
        self._states: dict[str, CheckState] = {}
        self._lock = threading.Lock()
        self._startup_passed = False
        self._refresher_pid = 0
        self._refresher_wanted = False
        self._refreshed_checks = False
        self._refresher_wake = threading.Event()

    # -- registering ------------------------------------------------------------------------

    def add(self, check: Check) -> Check:
        """Register ``check``; its name must be new."""
        with self._lock:
            if check.name in self._states:
                raise ConfigurationError(
                    f"a health check named {check.name!r} is registered already; "
                    "give the second one another name"
                )
            self._states[check.name] = CheckState(check, self._executor)
            self._refreshed_checks |= check.interval is not None
        if LIVENESS in check.group_set and check.component_type != "system":
            logger.warning(
                "zerodown: health check %r is a liveness check; if it depends on another "
                "service, an outage of that service restarts every instance at once. "
                "Put it in readiness unless restarting this process is what fixes it",
                check.name,
            )
        if self._refresher_wanted:
            self._ensure_refresher()
            self._refresher_wake.set()
        self.added.notify()
        return check

    def add_process_check(self, check: Check) -> None:
        """Add a middleware's default liveness check unless turned off or named already."""
        with self._lock:
            if not self.process_checks or check.name in self._states:
                return
        self.add(check)

    def check(self, name: str | None = None, **options: Unpack[CheckOptions]) -> Callable[[_F], _F]:
        """Decorator: register a function as a check (named after it unless ``name``), with
        :class:`Check`'s options."""

        def register(function: _F) -> _F:
            self.add(Check(name or function.__name__, function, **options))
            return function

        return register

    @property
    def checks(self) -> list[Check]:
        return [state.check for state in self._states.values()]

    # -- running ----------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run async checks on ``loop`` (the app's) and start background refreshes.

        The ASGI middleware calls it at lifespan startup; without it, async checks run on
        the loop of the probe that asks, and the refresher starts with the first probe.
        """
        if loop is not None:
            self._executor.home_loop = loop
        self._ensure_refresher()

    def select(
        self,
        groups: Collection[str],
        *,
        only: str | None = None,
        exclude: Collection[str] = (),
    ) -> list[Check] | None:
        """The checks of ``groups`` minus ``exclude``; with ``only``, that one check, or
        None when no check of that name is in the groups."""
        if isinstance(groups, str):  # one group, not its letters
            groups = {groups}
        if only is not None:
            state = self._states.get(only)
            if state is None or state.check.group_set.isdisjoint(groups):
                return None
            return [state.check]
        return [
            state.check
            for state in self._states.values()
            if not state.check.group_set.isdisjoint(groups) and state.check.name not in exclude
        ]

    async def run(self, checks: Iterable[Check]) -> Report:
        """Run (or read the cached results of) ``checks`` concurrently, each bounded."""
        outcomes = self._outcomes(checks)
        runs = [outcome for _, outcome in outcomes if isinstance(outcome, Run)]
        if runs:  # from the cache alone, a probe creates no task
            await asyncio.gather(*(run.wait_async() for run in runs))
        return _report(outcomes)

    def run_sync(self, checks: Iterable[Check]) -> Report:
        """:meth:`run` for threads without an event loop (WSGI)."""
        outcomes = self._outcomes(checks)
        for _, outcome in outcomes:
            if isinstance(outcome, Run):
                outcome.wait()
        return _report(outcomes)

    def _outcomes(self, checks: Iterable[Check]) -> list[tuple[Check, CheckResult | Run]]:
        self._ensure_refresher()
        states = [self._states[check.name] for check in checks]
        return [
            (state.check, state.current(refresh=state.check.interval is None)) for state in states
        ]

    # -- startup ----------------------------------------------------------------------------

    @property
    def startup_passed(self) -> bool:
        """Whether the startup checks passed once (they are not asked again after that)."""
        return self._startup_passed

    def note_startup(self, report: Report) -> None:
        """Latch :attr:`startup_passed` when no startup check in ``report`` fails."""
        if all(
            check.shown_status(result) != "fail"
            for check, result in report.results
            if STARTUP in check.group_set
        ):
            self._startup_passed = True

    # -- background refresh -----------------------------------------------------------------

    def _ensure_refresher(self) -> None:
        # Not before start() or the first probe: until then the app's loop is unknown, and
        # an async check run elsewhere would find its client bound to another loop.
        self._refresher_wanted = True
        pid = os.getpid()
        if self._refresher_pid == pid or not self._refreshed_checks:
            return
        with self._lock:
            if self._refresher_pid == pid:
                return
            self._refresher_pid = pid
        threading.Thread(target=self._refresh, name="zerodown-health", daemon=True).start()

    def _refresh(self) -> None:
        """Start a run of every ``interval`` check when it is due, forever (daemon thread)."""
        while True:
            self._refresher_wake.clear()
            due_times = []
            for state in list(self._states.values()):
                if state.check.interval is None:
                    continue
                if state.next_run_at <= time.monotonic():
                    state.current(refresh=True)
                due_times.append(state.next_run_at)
            now = time.monotonic()
            sleep = min((due - now for due in due_times), default=60.0)
            self._refresher_wake.wait(min(max(sleep, 0.05), 60.0))


def _report(outcomes: list[tuple[Check, CheckResult | Run]]) -> Report:
    """The report of outcomes whose runs have all settled."""
    return Report.of(
        (check, outcome if isinstance(outcome, CheckResult) else outcome.result())
        for check, outcome in outcomes
    )


_default_health: Health | None = None
_default_lock = threading.Lock()


def get_health() -> Health:
    """The process's health registry, created from the environment on first use."""
    global _default_health
    with _default_lock:
        if _default_health is None:
            _default_health = Health()
        return _default_health
