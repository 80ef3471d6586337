"""gunicorn hooks: the master's lame-duck window, and what every worker learns from it.

gunicorn's master closes its listeners before anything else on TERM and offers no hook
before that (docs/gunicorn.md, "What happens at TERM"). The hooks here replace the master's TERM
handling instead, which relies on arbiter internals: they are checked against the gunicorn
versions this release was verified with, and refused otherwise.

The workers learn of a drain through memory shared across ``fork``. It is created when this
module is first imported, which happens in the master while it reads the config file, before
any worker exists; a HUP re-reads the config file but finds this module imported already, so
the memory is never re-created.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import sys
import threading
import time
from typing import Any

from .._errors import ConfigurationError
from .._lifecycle import Lifecycle, ProcessLoad, get_lifecycle
from .._phase import Phase
from .._polling import poll
from .._settings import read_seconds

logger = logging.getLogger("zerodown")

#: gunicorn (major, minor) releases whose arbiter internals these hooks were verified with.
VERIFIED_GUNICORN = ((27, 0),)
#: A proxy's idle timeout for upstream connections when ZERODOWN_PROXY_IDLE_TIMEOUT is unset
#: (AWS ALB, nginx ``keepalive_timeout`` and most ingress controllers use 60 s).
DEFAULT_PROXY_IDLE_TIMEOUT = 60.0
#: How often each worker looks at the shared flags and publishes its in-flight count.
WATCH_INTERVAL = 0.05
#: The worker attribute that holds a worker's slot in the shared memory.
SLOT_ATTRIBUTE = "zerodown_slot"

_DRAINING = 0  # the master got TERM: readiness fails and connections close, everywhere
_RETIRING = 1  # the master got TERM while its USR2 successor serves: connections close only
_STOPPING = 2  # the lame-duck window is over: gunicorn closes the listeners and stops
_HEADER_SIZE = 8
_SLOTS = 256
# pid, in-flight requests, time.monotonic() of the oldest one (0.0 when idle), and whether the
# worker serves (its app started). CLOCK_MONOTONIC is one clock for every process of the
# machine, so another worker can compute the age.
_SLOT = struct.Struct("=qid?")


class SharedState:
    """Flags and per-worker counts in anonymous shared memory, inherited by forked workers.

    Slot reads are not atomic with respect to a worker's writes; the counts are for display.
    """

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, _HEADER_SIZE + _SLOTS * _SLOT.size)

    @property
    def draining(self) -> bool:
        return self._memory[_DRAINING] == 1

    @property
    def retiring(self) -> bool:
        return self._memory[_RETIRING] == 1

    @property
    def closing_connections(self) -> bool:
        return self._memory[_DRAINING] == 1 or self._memory[_RETIRING] == 1

    def start_draining(self) -> None:
        self._memory[_DRAINING] = 1

    def start_retiring(self) -> None:
        self._memory[_RETIRING] = 1

    @property
    def stopping(self) -> bool:
        return self._memory[_STOPPING] == 1

    def start_stopping(self) -> None:
        self._memory[_STOPPING] = 1

    def free_slot(self, used: set[int]) -> int | None:
        return next((slot for slot in range(_SLOTS) if slot not in used), None)

    def publish(
        self, slot: int, pid: int, in_flight: int, oldest_started: float | None, serving: bool
    ) -> None:
        offset = self._offset(slot)
        _SLOT.pack_into(self._memory, offset, pid, in_flight, oldest_started or 0.0, serving)

    def clear(self, slot: int) -> None:
        _SLOT.pack_into(self._memory, self._offset(slot), 0, 0, 0.0, False)

    def _slots(self) -> list[tuple[int, int, float, bool]]:
        return [_SLOT.unpack_from(self._memory, self._offset(slot)) for slot in range(_SLOTS)]

    def loads(self) -> list[ProcessLoad]:
        now = time.monotonic()
        return [
            ProcessLoad(pid, in_flight, now - oldest if oldest else None)
            for pid, in_flight, oldest, _ in self._slots()
            if pid
        ]

    def serving_pids(self) -> set[int]:
        """The workers whose app has started."""
        return {pid for pid, _, _, serving in self._slots() if pid and serving}

    @staticmethod
    def _offset(slot: int) -> int:
        return _HEADER_SIZE + slot * _SLOT.size


shared_state = SharedState()


def _disabled() -> bool:
    return get_lifecycle().settings.disabled


# -- the master ------------------------------------------------------------------------


class MasterLameDuck:
    """The master's TERM handling: serve on for ``shutdown_delay``, then stop gracefully.

    gunicorn's main loop looks its signal handlers up by name on every signal and treats
    StopIteration as "halt gracefully"; the window's end is checked where the loop waits
    for signals, which is bounded so that the halt comes on time.
    """

    def __init__(self, server: Any, state: SharedState, delay: float) -> None:
        self._server = server
        self._state = state
        self._delay = delay
        self._deadline: float | None = None
        self._wait_for_signals = server.wait_for_signals

    def install(self) -> None:
        self._server.handle_term = self.handle_term
        self._server.wait_for_signals = self.wait_for_signals

    def _stop(self) -> None:
        """End the window: gunicorn's graceful stop runs (it closes the listeners first)."""
        self._state.start_stopping()
        raise StopIteration

    def handle_term(self) -> None:
        if self._deadline is not None:
            logger.warning("zerodown: TERM received again; skipping the rest of the delay")
            self._stop()
        graceful = self._server.cfg.graceful_timeout
        if self._server.reexec_pid:
            # The master started by USR2 serves the same sockets: this is a hand-over, not
            # the instance leaving, so readiness must keep passing.
            self._state.start_retiring()
            logger.warning(
                "zerodown: TERM received while a new master (pid %s) serves; the old workers "
                "close their connections for %.1fs, then stop gracefully (graceful_timeout %gs)",
                self._server.reexec_pid,
                self._delay,
                graceful,
            )
        else:
            self._state.start_draining()
            logger.warning(
                "zerodown: TERM received; draining: readiness fails in every worker and the "
                "listeners stay open for %.1fs, then gunicorn stops gracefully "
                "(graceful_timeout %gs)",
                self._delay,
                graceful,
            )
        self._deadline = time.monotonic() + self._delay
        if self._delay <= 0:
            self._stop()

    def wait_for_signals(self, timeout: float = 1.0) -> list[int]:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                logger.warning("zerodown: lame-duck window over; gunicorn stops gracefully")
                self._stop()
            timeout = min(timeout, left)
        signals: list[int] = self._wait_for_signals(timeout=timeout)
        return signals


class PatientReload:
    """HUP: the old workers are stopped only once the new ones serve.

    gunicorn's ``reload`` spawns the new workers and at once stops the old ones, before the
    new ones have imported the app; for that long nobody accepts, and requests wait in the
    listen backlog or time out. This holds the stop back until every new worker's app has
    started (its lifecycle left ``starting``), one of them died, or gunicorn's ``timeout``
    passed, while the master goes on reaping.
    """

    def __init__(self, server: Any, state: SharedState) -> None:
        self._server = server
        self._state = state
        self._reload = server.reload
        self._manage_workers = server.manage_workers

    def install(self) -> None:
        self._server.reload = self.reload

    def reload(self) -> None:
        server = self._server
        ages_before = server.worker_age

        def manage_workers() -> None:
            # reload() calls this once, right after spawning the new workers.
            server.manage_workers = self._manage_workers
            self._wait_for_new_workers(ages_before)
            self._manage_workers()

        server.manage_workers = manage_workers
        try:
            self._reload()
        finally:
            server.manage_workers = self._manage_workers

    def _wait_for_new_workers(self, ages_before: int) -> None:
        server = self._server
        spawned = server.worker_age - ages_before

        def settled() -> tuple[int, str] | None:
            new = [w.pid for w in server.WORKERS.values() if w.age > ages_before]
            if len(new) < spawned:
                return logging.WARNING, "a new worker exited while starting; reloading as is"
            if set(new) <= self._state.serving_pids():
                return logging.INFO, "the new workers serve; stopping the old ones"
            server.reap_workers()
            return None

        outcome = poll(
            settled, timeout=max(float(server.cfg.timeout), 1.0), interval=WATCH_INTERVAL
        )
        if outcome is None:
            logger.warning(
                "zerodown: the new workers did not start within timeout (%ss); "
                "stopping the old ones anyway",
                server.cfg.timeout,
            )
        else:
            level, message = outcome
            logger.log(level, "zerodown: %s", message)


def require_verified_gunicorn(version_info: tuple[int, ...], server: Any) -> None:
    """Refuse to start on a gunicorn whose arbiter these hooks were not verified with."""
    missing = [
        name
        for name in (
            "handle_term",
            "wait_for_signals",
            "reload",
            "manage_workers",
            "reap_workers",
            "worker_age",
            "WORKERS",
            "reexec_pid",
            "cfg",
        )
        if not hasattr(server, name)
    ]
    if tuple(version_info[:2]) in VERIFIED_GUNICORN and not missing:
        return
    verified = ", ".join(f"{major}.{minor}.x" for major, minor in VERIFIED_GUNICORN)
    found = ".".join(str(part) for part in version_info)
    detail = f" (its arbiter lacks {', '.join(missing)})" if missing else ""
    raise ConfigurationError(
        f"zerodown's gunicorn hooks replace gunicorn's TERM handling, which relies on arbiter "
        f"internals verified with gunicorn {verified}; this is gunicorn {found}{detail}. "
        f"Install a verified gunicorn (pip install 'gunicorn>=27.0,<27.1'), upgrade zerodown, "
        f"or remove the zerodown hooks from the gunicorn config."
    )


def budget_problems(cfg: Any, lifecycle: Lifecycle, environ: dict[str, str]) -> list[str]:
    """What in the gunicorn config can fail requests or skip cleanup, and what to change."""
    graceful = float(cfg.graceful_timeout)
    keepalive = float(cfg.keepalive)
    # The workers' shutdown callbacks run inside graceful_timeout; the master has none.
    problems = lifecycle.budget_problems(drain_timeout=graceful, drain_setting="graceful_timeout")
    worker = str(cfg.worker_class_str)
    if worker == "asgi" and keepalive >= graceful:
        problems.append(
            f"with -k asgi an idle kept-alive connection holds a stopping worker until the "
            f"master kills it at graceful_timeout ({graceful:g}s), skipping the lifespan "
            f"shutdown; set keepalive (now {keepalive:g}s) below graceful_timeout"
        )
    proxy_idle = read_seconds(None, environ, "ZERODOWN_PROXY_IDLE_TIMEOUT")
    proxy_idle = DEFAULT_PROXY_IDLE_TIMEOUT if proxy_idle is None else proxy_idle
    if worker != "sync" and 0 < keepalive <= proxy_idle:
        problems.append(
            f"keepalive {keepalive:g}s is not above the proxy's idle timeout "
            f"({proxy_idle:g}s), so the proxy can send a request on a connection gunicorn is "
            f"closing; set keepalive to {proxy_idle + 5:g} or more, or set "
            f"ZERODOWN_PROXY_IDLE_TIMEOUT to your proxy's upstream idle timeout "
            f"(0 when no proxy is in front)"
        )
    if sys.argv and sys.argv[0].endswith(os.path.join("gunicorn", "__main__.py")):
        problems.append(
            "gunicorn was started as `python -m gunicorn`, so a USR2 upgrade re-executes "
            "gunicorn/__main__.py as a script and the new master fails to import "
            "(gunicorn's `http` package shadows the standard library's); start it with "
            "the `gunicorn` command"
        )
    return problems


def _route_logs(server: Any) -> None:
    """Send zerodown's log records to gunicorn's error log, as gunicorn's own are."""
    error_log = getattr(server.log, "error_log", None)
    if error_log is None or logger.handlers:
        return
    logger.handlers = list(error_log.handlers)
    logger.setLevel(error_log.level)
    logger.propagate = False


# -- the workers -----------------------------------------------------------------------


class WorkerWatch:
    """A thread in each worker: follows the shared flags into the worker's lifecycle and
    publishes the worker's in-flight count, every ``WATCH_INTERVAL``.

    ``on_draining`` callbacks therefore run in this thread under gunicorn.
    """

    def __init__(self, state: SharedState, lifecycle: Lifecycle, slot: int | None) -> None:
        self._state = state
        self._lifecycle = lifecycle
        self._slot = slot

    def start(self) -> None:
        threading.Thread(target=self._run, name="zerodown-gunicorn-watch", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.step()
            time.sleep(WATCH_INTERVAL)

    def step(self) -> None:
        lifecycle = self._lifecycle
        if self._state.draining and not lifecycle.is_draining:
            lifecycle.start_draining("the gunicorn master received TERM")
        elif self._state.retiring and not lifecycle.is_leaving:
            lifecycle.server.start_retiring("the gunicorn master hands over to its USR2 successor")
        if self._state.stopping and self._state.draining:
            lifecycle.server.listener_closed()
        if self._slot is not None:
            self._state.publish(
                self._slot,
                os.getpid(),
                lifecycle.in_flight,
                lifecycle.oldest_request_started,
                lifecycle.phase is not Phase.STARTING,
            )


# -- the hooks (gunicorn calls them by these names) -------------------------------------


def when_ready(server: Any) -> None:
    """Master, before the first worker is forked: take over TERM, check the budget."""
    if _disabled():
        return
    import gunicorn  # type: ignore[import-untyped]

    require_verified_gunicorn(gunicorn.version_info, server)
    _route_logs(server)
    lifecycle = get_lifecycle()
    MasterLameDuck(server, shared_state, lifecycle.settings.shutdown_delay).install()
    PatientReload(server, shared_state).install()
    for problem in budget_problems(server.cfg, lifecycle, dict(os.environ)):
        logger.warning("zerodown: %s", problem)


def pre_fork(server: Any, worker: Any) -> None:
    """Master: give the worker about to be forked a slot for its in-flight count."""
    if _disabled():
        return
    used = {getattr(sibling, SLOT_ATTRIBUTE, None) for sibling in server.WORKERS.values()}
    slot = shared_state.free_slot({slot for slot in used if slot is not None})
    if slot is None:
        logger.warning("zerodown: more than %d workers; this one's count is not shared", _SLOTS)
    setattr(worker, SLOT_ATTRIBUTE, slot)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, right after fork: the master now drives this process's shutdown."""
    if _disabled():
        return
    lifecycle = get_lifecycle()
    lifecycle.server.shutdown_driven_by = "gunicorn"
    lifecycle.server.worker_threads = max(1, int(getattr(worker.cfg, "threads", 1) or 1))
    lifecycle.server.share_loads(shared_state.loads)
    WorkerWatch(shared_state, lifecycle, getattr(worker, SLOT_ATTRIBUTE, None)).start()


def pre_request(worker: Any, req: Any) -> None:
    """Sync, gthread and asgi workers: ``Connection: close`` while draining.

    gunicorn drops a ``Connection`` header set by a WSGI app; ``must_close`` is how the
    server itself closes after the response.
    """
    if shared_state.closing_connections:
        req.must_close = True


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, after its drain: run the shutdown callbacks (WSGI apps have no lifespan).

    For ASGI workers the lifespan shutdown ran them already and this returns at once.
    gunicorn also calls this hook in the master when a worker vanished; that is skipped.
    """
    if _disabled() or os.getpid() != getattr(worker, "pid", None):
        return
    get_lifecycle().shutdown_sync()


def child_exit(server: Any, worker: Any) -> None:
    """Master: free the slot of a worker that exited."""
    slot = getattr(worker, SLOT_ATTRIBUTE, None)
    if slot is not None:
        shared_state.clear(slot)
