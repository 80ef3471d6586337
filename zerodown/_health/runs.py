"""Running checks: each bounded by its timeout, single-flight, cached, backed off and damped.

A check's function runs where it can neither block nor hang a probe: a sync function in a
thread of its own, an async one on the app's event loop. Probes never run a check
themselves; they start a run or join the one under way, and wait for it at most until its
deadline. A function that has not returned by then is left to finish on its own, and no
second run starts beside it, so a hung dependency costs one thread, not one per probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from .._redact import redact
from .._telemetry import telemetry
from .model import Check, CheckResult, Status

logger = logging.getLogger("zerodown")

_STATUSES: frozenset[str] = frozenset({"pass", "warn", "fail"})
#: The first wait after a failure; it doubles with each further failure up to ``max_backoff``.
_FIRST_BACKOFF = 1.0


def _timed_out(timeout: float) -> CheckResult:
    return CheckResult(
        "fail", f"timed out after {float(timeout)}s", finished_at=time.time(), duration=timeout
    )


class Run:
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


class Executor:
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


class CheckState:
    """A check's last result, its run under way, and the counts that damp and back it off."""

    def __init__(self, check: Check, executor: Executor) -> None:
        self.check = check
        self._executor = executor
        self._lock = threading.Lock()
        self._run: Run | None = None
        # monotonic() when the function last started and has not returned yet.
        self._busy_since: float | None = None
        self.result: CheckResult | None = None
        self._passing: bool | None = None
        self._failures = 0
        self._successes = 0
        self.next_run_at = 0.0

    def current(self, *, refresh: bool) -> CheckResult | Run:
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
            run = self._run = Run(self.check.timeout, self._record)
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

    def _finish(self, run: Run, result: CheckResult) -> None:
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
            result.duration,
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
