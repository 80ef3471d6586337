"""Health checks: each bounded by its timeout, single-flight, cached, backed off and damped.

A check's function runs where it can neither block nor hang a probe: a sync function in a
thread of its own, an async one on the app's event loop. Probes never run a check
themselves; they start a run or join the one under way, and wait for it at most until its
deadline. A function that has not returned by then is left to finish on its own, and no
second run starts beside it, so a hung dependency costs one thread, not one per probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import ipaddress
import logging
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

from ._errors import ConfigurationError
from ._redact import redact
from ._telemetry import telemetry

logger = logging.getLogger("zerodown")

Status = Literal["pass", "warn", "fail"]
#: A check: returns None, a bool or a dict (IETF fields), or raises; sync or ``async def``.
CheckFunction = Callable[[], object]
_F = TypeVar("_F", bound=CheckFunction)

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"

#: Names appear in URLs (``/readyz/NAME``) and as JSON keys.
_CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_STATUSES: frozenset[str] = frozenset({"pass", "warn", "fail"})
#: The first wait after a failure; it doubles with each further failure up to ``max_backoff``.
_FIRST_BACKOFF = 1.0
#: Seconds a check may run unless it says otherwise.
DEFAULT_CHECK_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one run of a check found. ``details`` are extra IETF fields from the check."""

    status: Status
    output: str = ""
    observed_value: object = None
    observed_unit: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    #: ``time.time()`` when the run ended.
    finished_at: float = 0.0
    duration: float = 0.0

    @property
    def passing(self) -> bool:
        return self.status != "fail"


@dataclass(frozen=True)
class Check:
    """A named dependency or process condition, and how often and how long to ask it.

    ``probes`` are the groups the check belongs to: ``"readiness"`` (the default),
    ``"liveness"``, ``"startup"`` or names of your own. A check that is not ``critical``
    makes the status ``warn`` instead of ``fail`` and never fails a probe.
    ``failure_threshold`` / ``success_threshold`` damp flapping as Kubernetes' probe fields
    do: the reported status changes only after that many runs in a row say so.
    With ``interval`` set, a background thread runs the check that often and probes read
    the last result; otherwise a probe runs it when the cached result is older than
    ``cache_ttl``. After consecutive failures the next run waits 1 s, 2 s, 4 s, ... up to
    ``max_backoff``. ``secrets`` are strings (DSNs, passwords) redacted from all output.
    """

    name: str
    function: CheckFunction
    timeout: float = DEFAULT_CHECK_TIMEOUT
    critical: bool = True
    probes: Collection[str] = (READINESS,)
    component_type: str = "component"
    cache_ttl: float = 1.0
    interval: float | None = None
    failure_threshold: int = 1
    success_threshold: int = 1
    max_backoff: float = 5.0
    secrets: Collection[str] = ()
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _CHECK_NAME.match(self.name):
            raise ConfigurationError(
                f"check name {self.name!r} is not usable in a URL: use up to 64 letters, "
                "digits, '_', '.', ':' or '-', starting with a letter or digit"
            )
        if not callable(self.function):
            raise ConfigurationError(f"check {self.name!r}: function must be callable")
        probes = frozenset([self.probes] if isinstance(self.probes, str) else self.probes)
        if not probes:
            raise ConfigurationError(f"check {self.name!r} belongs to no probe; name at least one")
        _require_seconds(self, "timeout", self.timeout, positive=True)
        _require_seconds(self, "cache_ttl", self.cache_ttl)
        _require_seconds(self, "max_backoff", self.max_backoff)
        if self.interval is not None:
            _require_seconds(self, "interval", self.interval, positive=True)
        for threshold in ("failure_threshold", "success_threshold"):
            value = getattr(self, threshold)
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"check {self.name!r}: {threshold} must be an int >= 1")
        object.__setattr__(self, "probes", probes)
        object.__setattr__(self, "secrets", tuple(s for s in self.secrets if s))
        call = getattr(self.function, "__call__", None)  # noqa: B004 - async callable objects
        is_async = inspect.iscoroutinefunction(self.function) or inspect.iscoroutinefunction(call)
        object.__setattr__(self, "is_async", is_async)

    @property
    def groups(self) -> frozenset[str]:
        """``probes``, which ``__post_init__`` made a frozenset."""
        return cast(frozenset[str], self.probes)

    def shown_status(self, result: CheckResult) -> Status:
        """The status as reported: a failing check that is not critical only warns."""
        if result.status == "fail" and not self.critical:
            return "warn"
        return result.status


def _require_seconds(check: Check, name: str, value: float, *, positive: bool = False) -> None:
    if (
        not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"check {check.name!r}: {name} must be seconds {bound}")


@dataclass(frozen=True, slots=True)
class Report:
    """The checks a probe ran and the status they add up to."""

    status: Status
    results: tuple[tuple[Check, CheckResult], ...] = ()

    @classmethod
    def of(cls, results: Iterable[tuple[Check, CheckResult]]) -> Report:
        results = tuple(results)
        shown = {check.shown_status(result) for check, result in results}
        status: Status = "fail" if "fail" in shown else "warn" if "warn" in shown else "pass"
        return cls(status, results)


# -- runs ----------------------------------------------------------------------------------


def _timed_out(timeout: float) -> CheckResult:
    return CheckResult("fail", f"timed out after {float(timeout)}s", finished_at=time.time())


class _Run:
    """One execution of a check that any number of probes wait for, until its deadline."""

    def __init__(self, timeout: float, record: Callable[[CheckResult], CheckResult]) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._record = record
        self._lock = threading.Lock()
        self._settled = threading.Event()
        self._result: CheckResult | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    def settle(self, result: CheckResult) -> None:
        """The first result wins: the function's, or the timeout's when it came first."""
        with self._lock:
            if self._result is not None:
                return
            # Waiters get what the check reports, which flap damping may hold back.
            self._result = self._record(result)
            waiters, self._waiters = self._waiters, []
        self._settled.set()
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # that loop closed while its probe waited
                loop.call_soon_threadsafe(_wake, waiter)

    def result(self) -> CheckResult:
        result = self._result
        if result is None:  # pragma: no cover - settle() runs before every read
            raise RuntimeError("read a run before it settled")
        return result

    def wait(self) -> CheckResult:
        if not self._settled.wait(max(0.0, self.deadline - time.monotonic())):
            self.settle(_timed_out(self.timeout))
        return self.result()

    async def wait_async(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._result is not None:
                return self._result
            self._waiters.append((loop, waiter))
        try:
            await asyncio.wait_for(waiter, max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            self.settle(_timed_out(self.timeout))
        return self.result()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _interpret(value: object, started: float) -> CheckResult:
    """A check function's return value as a result."""
    finished_at, duration = time.time(), time.monotonic() - started
    if value is None or value is True:
        return CheckResult("pass", finished_at=finished_at, duration=duration)
    if isinstance(value, Mapping):
        fields = {str(key): item for key, item in value.items()}
        status = fields.pop("status", "pass")
        if status in _STATUSES:
            unit = fields.pop("observedUnit", None)
            return CheckResult(
                cast(Status, status),
                str(fields.pop("output", "")),
                fields.pop("observedValue", None),
                None if unit is None else str(unit),
                fields,
                finished_at,
                duration,
            )
        problem = f"returned status {status!r}; use pass, warn or fail"
    elif value is False:
        problem = "returned False"
    elif inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        problem = "returned an awaitable: declare the check with async def"
    else:
        problem = f"returned a {type(value).__name__}; return None, a bool or a dict, or raise"
    return CheckResult("fail", f"the check {problem}", finished_at=finished_at, duration=duration)


def _failure(error: BaseException, started: float) -> CheckResult:
    text = str(error)
    output = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return CheckResult("fail", output, finished_at=time.time(), duration=time.monotonic() - started)


def _run_sync(check: Check, finish: Callable[[CheckResult], None]) -> None:
    started = time.monotonic()
    try:
        value = check.function()
    except BaseException as error:  # nothing above this thread to raise to
        finish(_failure(error, started))
        return
    finish(_interpret(value, started))


async def _run_async(check: Check, finish: Callable[[CheckResult], None]) -> None:
    started = time.monotonic()
    function = cast(Callable[[], Awaitable[object]], check.function)
    scope = asyncio.timeout(check.timeout)
    try:
        async with scope:
            value = await function()
    except TimeoutError as error:
        finish(_timed_out(check.timeout) if scope.expired() else _failure(error, started))
    except asyncio.CancelledError as error:
        finish(_failure(error, started))
        raise
    except Exception as error:
        finish(_failure(error, started))
    else:
        finish(_interpret(value, started))


class _Executor:
    """Starts check functions: sync ones in a thread of their own, async ones on a loop.

    Async checks run on the app's loop once the app told us which it is (their clients,
    such as an asyncpg pool, belong to it), else on the calling thread's running loop, else
    on a private loop thread (a WSGI app's async checks).
    """

    def __init__(self) -> None:
        self.home_loop: asyncio.AbstractEventLoop | None = None
        self._private: asyncio.AbstractEventLoop | None = None
        self._private_pid = 0
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, check: Check, finish: Callable[[CheckResult], None]) -> None:
        if not check.is_async:
            name = f"zerodown-check-{check.name}"
            threading.Thread(target=_run_sync, args=(check, finish), name=name, daemon=True).start()
            return
        loop = self._loop()
        coroutine = _run_async(check, finish)
        if loop is _running_loop():
            task = loop.create_task(coroutine)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            asyncio.run_coroutine_threadsafe(coroutine, loop)

    def _loop(self) -> asyncio.AbstractEventLoop:
        home = self.home_loop
        if home is not None and home.is_running():
            return home
        running = _running_loop()
        if running is not None:
            return running
        with self._lock:
            if self._private is None or self._private_pid != os.getpid():
                self._private = asyncio.new_event_loop()
                self._private_pid = os.getpid()
                threading.Thread(
                    target=self._private.run_forever, name="zerodown-checks-loop", daemon=True
                ).start()
            return self._private


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- one check's state -----------------------------------------------------------------------


class _CheckState:
    """A check's last result, its run under way, and the counts that damp and back it off."""

    def __init__(self, check: Check, executor: _Executor) -> None:
        self.check = check
        self._executor = executor
        self._lock = threading.Lock()
        self._run: _Run | None = None
        # monotonic() when the function last started and has not returned yet.
        self._busy_since: float | None = None
        self.result: CheckResult | None = None
        self._passing: bool | None = None
        self._failures = 0
        self._successes = 0
        self.next_run_at = 0.0

    def current(self, *, refresh: bool) -> CheckResult | _Run:
        """The cached result, or the run to wait for: the one under way or a new one.

        ``refresh=False`` is for probes of a check the background thread refreshes: they
        read its last result and start a run only when there is none yet.
        """
        now = time.monotonic()
        with self._lock:
            run = self._run
            if run is not None and not run.settled:
                return run
            if self.result is not None and (not refresh or now < self.next_run_at):
                return self.result
            run = self._run = _Run(self.check.timeout, self._record)
            busy_for = None if self._busy_since is None else now - self._busy_since
            if busy_for is None:
                self._busy_since = now
        if busy_for is None:
            self._executor.start(self.check, lambda result: self._finish(run, result))
        else:
            run.settle(
                CheckResult(
                    "fail",
                    f"timed out after {float(self.check.timeout)}s; its previous run has not "
                    f"returned after {busy_for:.1f}s",
                    finished_at=time.time(),
                )
            )
        return run

    def _finish(self, run: _Run, result: CheckResult) -> None:
        with self._lock:
            self._busy_since = None
        run.settle(result)

    def _record(self, result: CheckResult) -> CheckResult:
        """Count a run's result in; the result to report."""
        check = self.check
        with self._lock:
            if result.passing:
                self._successes, self._failures = self._successes + 1, 0
            else:
                self._failures, self._successes = self._failures + 1, 0
            was = self._passing
            if was is None:
                passing = result.passing
            elif was:
                passing = self._failures < check.failure_threshold
            else:
                passing = self._successes >= check.success_threshold
            self._passing = passing
            reported = self.result = result if passing == result.passing else self._damped(result)
            base = check.cache_ttl if check.interval is None else check.interval
            wait = base
            if self._failures:
                backoff = _FIRST_BACKOFF * 2 ** min(self._failures - 1, 30)
                wait = max(base, min(check.max_backoff, backoff))
            self.next_run_at = time.monotonic() + wait
        telemetry.check_ran(
            check.name,
            result.status,
            check.timeout if result.duration is None else result.duration,
            redact(result.output, check.secrets),
        )
        if not passing and was is not False:
            logger.warning(
                "zerodown: health check %r fails: %s",
                check.name,
                redact(result.output, check.secrets) or result.status,
            )
        elif passing and was is False:
            logger.warning("zerodown: health check %r passes again", check.name)
        return reported

    def _damped(self, result: CheckResult) -> CheckResult:
        """The latest result under the status that still holds, saying why (lock held)."""
        check = self.check
        if result.passing:
            status: Status = "fail"
            note = (
                f"passed {self._successes} time(s) in a row; reports pass after "
                f"{check.success_threshold}"
            )
        else:
            status = "warn"
            note = (
                f"failed {self._failures} time(s) in a row; reports fail after "
                f"{check.failure_threshold}"
            )
        output = f"{note}: {result.output}" if result.output else note
        return CheckResult(
            status,
            output,
            result.observed_value,
            result.observed_unit,
            result.details,
            result.finished_at,
            result.duration,
        )


# -- the registry ----------------------------------------------------------------------------


class Health:
    """The checks of a process, who may see their details, and what version this is.

    ``version``, ``release_id`` and ``service_id`` appear in every probe body; they default
    to ``ZERODOWN_VERSION``, ``ZERODOWN_RELEASE`` and ``ZERODOWN_SERVICE_ID``. Details of the
    checks (outputs, observed values) are shown only to a request with
    ``Authorization: Bearer <token>`` (``token`` or ``ZERODOWN_HEALTH_TOKEN``), or to
    loopback clients when ``details_for_loopback`` is set. ``process_checks`` lets the
    middleware add the default liveness check of its kind (event-loop lag for ASGI, stuck
    worker threads for WSGI).
    """

    def __init__(
        self,
        *,
        version: str | None = None,
        release_id: str | None = None,
        service_id: str | None = None,
        token: str | None = None,
        details_for_loopback: bool = False,
        process_checks: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.version = version or env.get("ZERODOWN_VERSION") or None
        self.release_id = release_id or env.get("ZERODOWN_RELEASE") or None
        self.service_id = service_id or env.get("ZERODOWN_SERVICE_ID") or None
        secret = token or env.get("ZERODOWN_HEALTH_TOKEN") or ""
        self._authorization = f"Bearer {secret}".encode() if secret else None
        self.details_for_loopback = details_for_loopback
        self.process_checks = process_checks
        self._executor = _Executor()
        self._states: dict[str, _CheckState] = {}
        self._lock = threading.Lock()
        self._startup_passed = False
        self._refresher_pid = 0
        self._refresher_wanted = False
        self._refreshed_checks = False
        self._refresher_wake = threading.Event()
        self._on_added: list[Callable[[], None]] = []

    # -- registering ------------------------------------------------------------------------

    def add(self, check: Check) -> Check:
        """Register ``check``; its name must be new."""
        with self._lock:
            if check.name in self._states:
                raise ConfigurationError(
                    f"a health check named {check.name!r} is registered already; "
                    "give the second one another name"
                )
            self._states[check.name] = _CheckState(check, self._executor)
            self._refreshed_checks |= check.interval is not None
        if LIVENESS in check.probes and check.component_type != "system":
            logger.warning(
                "zerodown: health check %r is a liveness check; if it depends on another "
                "service, an outage of that service restarts every instance at once. "
                "Put it in readiness unless restarting this process is what fixes it",
                check.name,
            )
        if self._refresher_wanted:
            self._ensure_refresher()
            self._refresher_wake.set()
        for callback in list(self._on_added):
            callback()
        return check

    def _when_added(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each check is registered (the probe routes follow)."""
        self._on_added.append(callback)

    def add_process_check(self, check: Check) -> None:
        """Add a middleware's default liveness check unless turned off or named already."""
        with self._lock:
            if not self.process_checks or check.name in self._states:
                return
        self.add(check)

    def check(
        self,
        name: str | None = None,
        *,
        timeout: float = DEFAULT_CHECK_TIMEOUT,
        critical: bool = True,
        probes: Collection[str] = (READINESS,),
        component_type: str = "component",
        cache_ttl: float = 1.0,
        interval: float | None = None,
        failure_threshold: int = 1,
        success_threshold: int = 1,
        max_backoff: float = 5.0,
    ) -> Callable[[_F], _F]:
        """Decorator: register a function as a check (named after it unless ``name``)."""

        def register(function: _F) -> _F:
            self.add(
                Check(
                    name or function.__name__,
                    function,
                    timeout=timeout,
                    critical=critical,
                    probes=probes,
                    component_type=component_type,
                    cache_ttl=cache_ttl,
                    interval=interval,
                    failure_threshold=failure_threshold,
                    success_threshold=success_threshold,
                    max_backoff=max_backoff,
                )
            )
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
            if state is None or state.check.groups.isdisjoint(groups):
                return None
            return [state.check]
        return [
            state.check
            for state in self._states.values()
            if not state.check.groups.isdisjoint(groups) and state.check.name not in exclude
        ]

    async def run(self, checks: Iterable[Check]) -> Report:
        """Run (or read the cached results of) ``checks`` concurrently, each bounded."""
        outcomes = self._outcomes(checks)
        runs = [outcome for _, outcome in outcomes if isinstance(outcome, _Run)]
        if runs:  # from the cache alone, a probe creates no task
            await asyncio.gather(*(run.wait_async() for run in runs))
        return _report(outcomes)

    def run_sync(self, checks: Iterable[Check]) -> Report:
        """:meth:`run` for threads without an event loop (WSGI)."""
        outcomes = self._outcomes(checks)
        for _, outcome in outcomes:
            if isinstance(outcome, _Run):
                outcome.wait()
        return _report(outcomes)

    def _outcomes(self, checks: Iterable[Check]) -> list[tuple[Check, CheckResult | _Run]]:
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
            if STARTUP in check.probes
        ):
            self._startup_passed = True

    # -- who sees details -------------------------------------------------------------------

    def authorizes(self, authorization: bytes | None, client_host: str | None) -> bool:
        """Whether a request may see the checks' details."""
        if (
            self._authorization is not None
            and authorization is not None
            and hmac.compare_digest(authorization.strip(), self._authorization)
        ):
            return True
        return self.details_for_loopback and _is_loopback(client_host)

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


def _report(outcomes: list[tuple[Check, CheckResult | _Run]]) -> Report:
    """The report of outcomes whose runs have all settled."""
    return Report.of(
        (check, outcome if isinstance(outcome, CheckResult) else outcome.result())
        for check, outcome in outcomes
    )


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_default_health: Health | None = None
_default_lock = threading.Lock()


def get_health() -> Health:
    """The process's health registry, created from the environment on first use."""
    global _default_health
    with _default_lock:
        if _default_health is None:
            _default_health = Health()
        return _default_health
