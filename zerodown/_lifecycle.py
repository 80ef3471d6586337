"""The per-process lifecycle: phase, in-flight requests, and the ordered shutdown callbacks.

It knows nothing of HTTP, servers or signals; the middleware and the server integrations
drive it, and everything else asks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar, Unpack

from ._errors import ConfigurationError
from ._events import Subscribers
from ._phase import Phase
from ._settings import BUDGET_MARGIN, Settings, SettingsOverrides
from ._telemetry import ShutdownSpan, telemetry

logger = logging.getLogger("zerodown")

ShutdownCallback = Callable[[], object] | Callable[[], Awaitable[object]]
DrainingCallback = Callable[[], object]
_C = TypeVar("_C", bound=Callable[..., object])
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class ProcessLoad:
    """One server process's in-flight requests."""

    pid: int
    in_flight: int
    oldest_request_age: float | None


class InFlight:
    """The requests a process is serving, each with the ``time.monotonic()`` it started.

    ``started`` is held openly: the ASGI middleware's hot path stores and pops its own keys
    (the requests' ``send`` callables) there, since a method call would cost it as much as
    the whole count. Everything else counts in and out with tokens, which never compare
    equal to those keys. Insertion order is start order, so the first entry is the oldest.

    No lock: ``next()`` on ``itertools.count`` and setting or popping a dict key are each
    atomic, and a lock would cost more than all the rest.
    """

    __slots__ = ("_tokens", "started")

    def __init__(self) -> None:
        self.started: dict[Hashable, float] = {}
        self._tokens = itertools.count()

    def begin(self) -> int:
        """Count a request in; pass the returned token to :meth:`end`."""
        token = next(self._tokens)
        self.started[token] = time.monotonic()
        return token

    def end(self, token: Hashable) -> None:
        self.started.pop(token, None)

    def __len__(self) -> int:
        return len(self.started)

    def oldest_started(self) -> float | None:
        return self._read(lambda starts: next(iter(starts), None), None)

    def older_than(self, seconds: float) -> int:
        since = time.monotonic() - seconds
        return self._read(lambda starts: sum(1 for started in starts if started < since), 0)

    def _read(self, read: Callable[[Iterable[float]], _R], fallback: _R) -> _R:
        """``read`` over the start times, again if another thread changed them mid-read."""
        for _ in range(100):
            try:
                return read(self.started.values())
            except RuntimeError:  # dictionary changed size during iteration
                continue
        return fallback


class ServerSide:
    """What only server integrations (the gunicorn hooks, zerodown's uvicorn worker, the
    signal relay) tell a lifecycle; apps use the :class:`Lifecycle` methods instead."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        #: Set by an integration that owns the shutdown sequence of the whole server (the
        #: gunicorn hooks): the middleware then installs no signal handling of its own.
        self.shutdown_driven_by: str | None = None
        #: Threads that serve requests in this process, when the integration knows
        #: (the gunicorn hooks set gunicorn's ``threads``).
        self.worker_threads: int | None = None
        self.loads_of_all_processes: Callable[[], list[ProcessLoad]] | None = None

    def share_loads(self, loads_of_all_processes: Callable[[], list[ProcessLoad]]) -> None:
        """Let :meth:`Lifecycle.process_loads` include sibling processes."""
        self.loads_of_all_processes = loads_of_all_processes

    def start_retiring(self, reason: str) -> bool:
        """This process is being replaced while the service stays up (a worker recycled or
        reloaded): close connections after each response, keep readiness as it is.

        True only for the call that started it; draining implies retiring.
        """
        return self._lifecycle._start_retiring(reason)

    def listener_closed(self) -> None:
        """The lame-duck window is over: the server stops accepting and drains. Once."""
        self._lifecycle._listener_closed_now()


@dataclass(frozen=True, slots=True)
class _RegisteredCallback:
    function: ShutdownCallback
    timeout: float

    @property
    def name(self) -> str:
        return getattr(self.function, "__qualname__", repr(self.function))


class Lifecycle:
    """One per process: where the process is in its life and what is still running.

    Thread-safe (WSGI servers call it from a thread pool) and asyncio-safe (nothing in it
    blocks on I/O). Settings not given, as ``settings`` or as keyword arguments, come from
    ``ZERODOWN_*`` variables.

    Beside the app-facing methods it holds :attr:`requests` (the in-flight table),
    :attr:`leaving` (told when responses start closing their connections) and
    :attr:`server` (what server integrations call).
    """

    def __init__(
        self, *, settings: Settings | None = None, **overrides: Unpack[SettingsOverrides]
    ) -> None:
        self.settings = settings or Settings.load(**overrides)
        self._lock = threading.Lock()
        self._phase = Phase.STARTING
        self._draining = False
        # Draining or retiring: responses should close their connections.
        self._leaving = False
        #: Told once, when this process starts draining or retiring (the middleware's hot
        #: path caches the answer of :attr:`is_leaving` and needs to hear when it changes).
        self.leaving = Subscribers("leaving")
        self._draining_since: float | None = None
        self.requests = InFlight()
        self.server = ServerSide(self)
        self._on_draining = Subscribers("on_draining")
        self._on_shutdown: list[_RegisteredCallback] = []
        self._shutdown_started = False
        self._shutdown_span: ShutdownSpan | None = None
        self._listener_closed = False
        telemetry.watch_lifecycle(self)

    # -- state ---------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def is_draining(self) -> bool:
        """True from the first SIGTERM on: readiness fails."""
        return self._draining

    @property
    def is_leaving(self) -> bool:
        """True once this process drains or retires: responses carry ``Connection: close``."""
        return self._leaving

    @property
    def in_flight(self) -> int:
        return len(self.requests)

    @property
    def oldest_request_age(self) -> float | None:
        """Seconds the oldest in-flight request has been running, or None when idle."""
        started = self.oldest_request_started
        return None if started is None else time.monotonic() - started

    @property
    def oldest_request_started(self) -> float | None:
        """``time.monotonic()`` when the oldest in-flight request started, or None when idle."""
        return self.requests.oldest_started()

    def requests_older_than(self, seconds: float) -> int:
        """How many in-flight requests started more than ``seconds`` ago."""
        return self.requests.older_than(seconds)

    def process_loads(self) -> list[ProcessLoad]:
        """The in-flight requests of every process of this server, this one first.

        Just this process unless a server integration shares the counts of its siblings
        (the gunicorn hooks do, through memory shared by the workers).
        """
        own = ProcessLoad(os.getpid(), self.in_flight, self.oldest_request_age)
        siblings = self.server.loads_of_all_processes
        if siblings is None:
            return [own]
        return [own, *(load for load in siblings() if load.pid != own.pid)]

    @property
    def draining_for(self) -> float | None:
        """Seconds since draining started, or None before it."""
        since = self._draining_since
        return None if since is None else time.monotonic() - since

    @property
    def grace_left(self) -> float | None:
        """Seconds until the grace period ends (SIGKILL), when it is known and draining began."""
        grace, draining_for = self.settings.grace_period, self.draining_for
        if grace is None or draining_for is None:
            return None
        return grace - draining_for

    def _numbers(self) -> str:
        """What a lifecycle log line says about the load and the budget."""
        age = self.oldest_request_age
        numbers = f"in flight: {self.in_flight}, oldest: {'-' if age is None else f'{age:.2f}s'}"
        left = self.grace_left
        return numbers if left is None else f"{numbers}, {left:.1f}s left before SIGKILL"

    @property
    def delay_left(self) -> float:
        """Seconds of ``shutdown_delay`` still to serve (all of it before draining)."""
        return max(0.0, self.settings.shutdown_delay - (self.draining_for or 0.0))

    # -- requests ------------------------------------------------------------------------

    def request_started(self) -> int:
        """Count a request in; pass the returned token to :meth:`request_finished`."""
        return self.requests.begin()

    def request_finished(self, token: int) -> None:
        self.requests.end(token)

    # -- phase changes -------------------------------------------------------------------

    def mark_ready(self) -> None:
        """The app finished starting. Has no effect once draining began."""
        with self._lock:
            if self._phase is not Phase.STARTING:
                return
            self._phase = Phase.READY
        logger.info("zerodown: ready (pid %d)", os.getpid())

    def start_draining(self, reason: str = "shutdown requested") -> bool:
        """Enter the draining phase; True only for the call that started it.

        The ``on_draining`` callbacks run in the calling thread, in registration order.
        """
        if not self._enter_draining(reason):
            return False
        logger.warning(
            "zerodown: %s; draining: readiness now fails, still serving for %.1fs (%s)",
            reason,
            self.settings.shutdown_delay,
            self._numbers(),
        )
        self._on_draining.notify()
        return True

    def _enter_draining(self, reason: str) -> bool:
        """Switch to draining; True only for the call that did."""
        with self._lock:
            if self._draining:
                return False
            self._draining = True
            newly_leaving = not self._leaving
            self._leaving = True
        # The middleware's hot path is off before readiness fails: a request that starts
        # after a probe saw 503 closes its connection.
        if newly_leaving:
            self.leaving.notify()
        with self._lock:
            self._phase = Phase.DRAINING
            self._draining_since = time.monotonic()
            self._shutdown_span = telemetry.start_shutdown(reason, self.in_flight)
        return True

    def _start_retiring(self, reason: str) -> bool:
        with self._lock:
            if self._leaving:
                return False
            self._leaving = True
        logger.info("zerodown: %s; retiring: responses now close their connections", reason)
        self.leaving.notify()
        return True

    def _listener_closed_now(self) -> None:
        with self._lock:
            if self._listener_closed:
                return
            self._listener_closed = True
        logger.warning(
            "zerodown: lame-duck window over after %.1fs; the server stops accepting and "
            "drains (%s)",
            self.draining_for or 0.0,
            self._numbers(),
        )
        if self._shutdown_span is not None:
            self._shutdown_span.event("listener closed", {"zerodown.in_flight": self.in_flight})

    # -- callbacks -----------------------------------------------------------------------

    def on_draining(self, callback: _C) -> _C:
        """Call ``callback()`` the moment draining starts (tell websocket clients to move).

        Usable as a decorator. It runs in the thread that noticed the signal (the event loop's
        thread under uvicorn) and must not block.
        """
        self._on_draining.subscribe(callback)
        return callback

    def on_shutdown(self, callback: _C, *, timeout: float | None = None) -> _C:
        """Run ``callback`` (sync or async) after the drain; the last registered runs first.

        Each one is bounded by ``timeout`` (default: the ``callback_timeout`` setting); a
        failure or a timeout is logged and the next callback still runs. Usable as a
        decorator.
        """
        bound = self.settings.callback_timeout if timeout is None else timeout
        self._on_shutdown.append(_RegisteredCallback(callback, bound))
        return callback

    @property
    def callbacks_budget(self) -> float:
        """The longest the shutdown callbacks can take together."""
        return sum(registered.timeout for registered in self._on_shutdown)

    async def shutdown(self) -> None:
        """Run the shutdown callbacks in reverse order, each bounded, then mark stopped.

        Idempotent: a second call returns at once.
        """
        with self._lock:
            if self._shutdown_started:
                return
            self._shutdown_started = True
        # No SIGTERM reached zerodown first: a worker recycled or reloaded, or a server
        # stopping on its own. Nobody is left to tell to move, so on_draining is not run.
        self._enter_draining("the server is stopping")
        span = self._shutdown_span or ShutdownSpan(None)
        callbacks = list(reversed(self._on_shutdown))
        logger.info(
            "zerodown: drained after %.2fs; running %d shutdown callback(s), budget %gs (%s)",
            self.draining_for or 0.0,
            len(callbacks),
            self.callbacks_budget,
            self._numbers(),
        )
        span.event("drained", {"zerodown.in_flight": self.in_flight})
        failed = 0
        for registered in callbacks:
            started = time.monotonic()
            outcome = await _run_bounded(registered)
            failed += outcome != "done"
            span.event(
                "callback",
                {
                    "zerodown.callback.name": registered.name,
                    "zerodown.callback.outcome": outcome,
                    "zerodown.callback.duration": time.monotonic() - started,
                },
            )
        with self._lock:
            self._phase = Phase.STOPPED
        drained_for = self.draining_for or 0.0
        telemetry.drained(drained_for)
        span.end(failed_callbacks=failed)
        logger.info(
            "zerodown: stopped %.2fs after draining began (%d callback(s) failed)",
            drained_for,
            failed,
        )

    def shutdown_sync(self) -> None:
        """:meth:`shutdown` for code with no event loop running (WSGI server hooks)."""
        asyncio.run(self.shutdown())

    # -- budget --------------------------------------------------------------------------

    def budget_problems(
        self,
        *,
        drain_timeout: float | None = None,
        drain_setting: str = "ZERODOWN_DRAIN_TIMEOUT",
        pre_stop: float = 0.0,
        callbacks: float | None = None,
    ) -> list[str]:
        """What does not fit in the grace period; empty when it fits or none is known.

        ``drain_timeout`` is the server's own bound on the drain where it has one, set by
        ``drain_setting`` (named in the advice). ``pre_stop`` is a preStop hook's sleep,
        which the kubelet counts in the grace period; ``callbacks`` the shutdown callbacks'
        budget when not this lifecycle's own (``zerodown doctor`` reading a manifest).
        """
        grace = self.settings.grace_period
        if grace is None:
            return []
        drain = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        delay = self.settings.shutdown_delay
        callbacks = self.callbacks_budget if callbacks is None else callbacks
        needed = pre_stop + delay + drain + callbacks + BUDGET_MARGIN
        if needed <= grace:
            return []
        hook = f"preStop {pre_stop:g}s + " if pre_stop else ""
        return [
            f"the shutdown sequence can take {needed:.1f}s ({hook}shutdown_delay {delay:g}s + "
            f"drain {drain:g}s + shutdown callbacks {callbacks:g}s + margin {BUDGET_MARGIN:g}s) "
            f"but ZERODOWN_GRACE_PERIOD is {grace:g}s, so the process can be killed mid-drain; "
            f"raise terminationGracePeriodSeconds to at least {needed:.0f} or lower "
            f"ZERODOWN_SHUTDOWN_DELAY / {drain_setting}"
        ]


async def _in_daemon_thread(function: Callable[[], object]) -> object:
    """Run a blocking callback without blocking the loop.

    Not ``asyncio.to_thread``: interpreter exit joins the default executor's threads, so a
    callback that hangs there would hold the process past its timeout.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(outcome: object, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(outcome)
        else:
            future.set_exception(error)

    def run() -> None:
        try:
            outcome, error = function(), None
        except BaseException as caught:
            outcome, error = None, caught
        with contextlib.suppress(RuntimeError):  # the loop closed while this ran
            loop.call_soon_threadsafe(settle, outcome, error)

    threading.Thread(target=run, name="zerodown-shutdown-callback", daemon=True).start()
    return await future


async def _run_bounded(registered: _RegisteredCallback) -> str:
    """Run one callback within its timeout: ``done``, ``timed out`` or ``failed``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(registered.timeout):
            if inspect.iscoroutinefunction(registered.function):
                await registered.function()
            else:
                result = await _in_daemon_thread(registered.function)
                if inspect.isawaitable(result):
                    await result
    except TimeoutError:
        logger.error(
            "zerodown: shutdown callback %s timed out after %.1fs; continuing",
            registered.name,
            registered.timeout,
        )
        return "timed out"
    except Exception:
        logger.exception("zerodown: shutdown callback %s failed; continuing", registered.name)
        return "failed"
    logger.info(
        "zerodown: shutdown callback %s done in %.3fs",
        registered.name,
        time.monotonic() - started,
    )
    return "done"


_default_lifecycle: Lifecycle | None = None
_default_lock = threading.Lock()


def get_lifecycle() -> Lifecycle:
    """The process's lifecycle, created from the environment on first use.

    The middleware use it unless given one, so that code anywhere in the app (a shutdown
    callback registered in a module, a websocket handler asking whether to move clients)
    talks to the same object.
    """
    global _default_lifecycle
    with _default_lock:
        if _default_lifecycle is None:
            _default_lifecycle = Lifecycle()
        return _default_lifecycle


def configure_lifecycle(settings: Settings) -> Lifecycle:
    """Create the process's lifecycle with ``settings`` (a framework's own configuration,
    such as Django's ``settings.ZERODOWN``), before anything used it."""
    global _default_lifecycle
    with _default_lock:
        if _default_lifecycle is None:
            _default_lifecycle = Lifecycle(settings=settings)
        elif _default_lifecycle.settings != settings:
            raise ConfigurationError(
                "zerodown's lifecycle was already made (something called get_lifecycle() "
                "before the framework's settings were read), so they cannot apply; make the "
                "middleware after the framework is set up (Django: after "
                "get_asgi_application())"
            )
        return _default_lifecycle
