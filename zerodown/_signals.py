"""Holding a server's SIGTERM back for the lame-duck window, then handing it over.

uvicorn installs ``Server.handle_exit`` with ``signal.signal`` inside ``serve()``, before
the lifespan startup runs (uvicorn/server.py, ``capture_signals``). A handler installed
during lifespan startup therefore sees uvicorn's as the previous one and can call it later.

Servers that dispatch signals through their event loop (``loop.add_signal_handler``)
cannot be chained that way: the loop reacts to the wake-up fd whatever ``signal.signal``
says, and it does not tell which callback it holds. Two of them stop as gracefully on
SIGINT as on SIGTERM, with one callback for both: hypercorn serving in its own process
(``--workers 0``, hypercorn/asyncio/run.py ``worker_serve``) and granian's ASGI workers
(granian/_signals.py ``set_loop_signals``). For those, zerodown takes SIGTERM over on the
loop and, after the delay, hands over by raising SIGINT. Others (gunicorn ``-k asgi``,
where SIGINT is the quick stop) keep their handlers, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from ._lifecycle import Lifecycle

logger = logging.getLogger("zerodown")

SignalHandler = Any  # what signal.getsignal returns: a callable, an int, or None
_RELAYED = (signal.SIGTERM, signal.SIGINT)
_FALLBACK_ADVICE = (
    "under gunicorn add zerodown's hooks (from zerodown.gunicorn import * in gunicorn.conf.py); "
    "under hypercorn serve with --workers 0 (one process per pod); elsewhere delay the "
    "shutdown with a Kubernetes preStop sleep or zerodown's preStop endpoint"
)
#: Modules that install an event loop's handler stopping as gracefully on SIGINT as on
#: SIGTERM; only a process that such a server serves in has imported them.
_LOOP_SERVERS = {"hypercorn.asyncio.run": "hypercorn", "granian._signals": "granian"}
#: How the server's stop is started once the delay is over: its handler, given the signal.
HandOver = Callable[[int], None]


class ServerSignalRelay:
    """Turns the server's graceful stop into zerodown's shutdown sequence.

    The first SIGTERM starts draining and keeps the server serving for ``shutdown_delay``;
    then the server's own handler runs (it closes the listener and drains). A second
    SIGTERM, or any SIGINT, skips what is left of the delay. Signals after the hand-over
    go straight to the server.
    """

    def __init__(
        self,
        lifecycle: Lifecycle,
        loop: asyncio.AbstractEventLoop,
        hand_overs: dict[int, HandOver],
    ) -> None:
        self._lifecycle = lifecycle
        self._loop = loop
        self._hand_overs = hand_overs
        self._timer: asyncio.TimerHandle | None = None
        self._handed_over = False
        self._signalled = False

    def install(self) -> None:
        """In front of handlers installed with ``signal.signal``."""
        for signum in self._hand_overs:
            signal.signal(signum, self._on_signal)

    def install_on_loop(self) -> None:
        """In place of the event loop's own callbacks for these signals."""
        for signum in self._hand_overs:
            self._loop.add_signal_handler(signum, self._handle, signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Python runs this between two bytecodes of the main thread; doing the work from the
        # loop keeps user callbacks out of signal-handler context.
        self._loop.call_soon_threadsafe(self._handle, signum)

    def _handle(self, signum: int) -> None:
        if self._handed_over:
            self._hand_over(signum)
            return
        name = signal.Signals(signum).name
        first_signal = not self._signalled
        self._signalled = True
        self._lifecycle.start_draining(f"{name} received")
        # A preStop call may have started the delay already.
        delay = self._lifecycle.delay_left
        if first_signal and signum == signal.SIGTERM and delay > 0:
            self._timer = self._loop.call_later(delay, self._hand_over, signum)
            return
        if not first_signal:
            logger.warning("zerodown: %s received again; skipping the rest of the delay", name)
        self._hand_over(signum)

    def _hand_over(self, signum: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._handed_over:
            self._handed_over = True
            self._lifecycle.server.listener_closed()
        self._hand_overs[signum](signum)


def install_signal_relay(lifecycle: Lifecycle) -> ServerSignalRelay | None:
    """Chain the relay in front of the running server's handlers, if they can be chained.

    Call it from the event loop's thread after the server installed its handlers (during
    lifespan startup). Logs one warning, saying what to do instead, when it cannot.
    """
    if threading.current_thread() is not threading.main_thread():
        logger.warning(
            "zerodown: the server runs outside the main thread, so it receives no signals and "
            "zerodown cannot delay its shutdown; %s",
            _FALLBACK_ADVICE,
        )
        return None
    handlers: dict[int, SignalHandler] = {int(sig): signal.getsignal(sig) for sig in _RELAYED}
    term_handler = handlers[signal.SIGTERM]
    loop = asyncio.get_running_loop()
    if _dispatched_by_event_loop(term_handler):
        server = _loop_server()
        if server is None or not _dispatched_by_event_loop(handlers[signal.SIGINT]):
            logger.warning(
                "zerodown: this server handles SIGTERM through asyncio (gunicorn -k asgi), "
                "which zerodown cannot delay from inside the app; %s",
                _FALLBACK_ADVICE,
            )
            return None
        relay = ServerSignalRelay(lifecycle, loop, {signal.SIGTERM: _raise_sigint})
        relay.install_on_loop()
        logger.debug("zerodown: holding %s's SIGTERM back on its event loop", server)
        _warn_budget(lifecycle, None)
        return relay
    if not callable(term_handler):
        logger.warning(
            "zerodown: the server installed no SIGTERM handler in this process, so there is "
            "no graceful stop to delay (hypercorn --workers N: its master stops the workers); "
            "%s",
            _FALLBACK_ADVICE,
        )
        return None
    relay = ServerSignalRelay(
        lifecycle,
        loop,
        {signum: _calling(handler) for signum, handler in handlers.items() if callable(handler)},
    )
    relay.install()
    _bound_uvicorn_drain(term_handler, lifecycle)
    return relay


def _calling(handler: Callable[[int, FrameType | None], Any]) -> HandOver:
    return lambda signum: handler(signum, None)


def _raise_sigint(signum: int) -> None:
    # The server's loop callback for SIGINT is its graceful stop (see the module's doc).
    signal.raise_signal(signal.SIGINT)


def _loop_server() -> str | None:
    """The server whose loop callback stops as gracefully on SIGINT, if one serves here."""
    return next((name for module, name in _LOOP_SERVERS.items() if module in sys.modules), None)


def _dispatched_by_event_loop(handler: SignalHandler) -> bool:
    """Whether an event loop's ``add_signal_handler`` owns the signal.

    asyncio installs a no-op and reacts to the wake-up fd; uvloop installs a method of its
    loop. Either way the loop reacts whatever handler is installed over it.
    """
    if getattr(handler, "__name__", "") == "_sighandler_noop":
        return True
    return isinstance(getattr(handler, "__self__", None), asyncio.AbstractEventLoop)


def _bound_uvicorn_drain(term_handler: SignalHandler, lifecycle: Lifecycle) -> None:
    """Give uvicorn's unbounded drain the ``drain_timeout`` bound, and check the budget."""
    server = getattr(term_handler, "__self__", None)
    config = getattr(server, "config", None)
    if not type(server).__module__.startswith("uvicorn") or config is None:
        _warn_budget(lifecycle, None)
        return
    timeout = getattr(config, "timeout_graceful_shutdown", None)
    if timeout is None:
        timeout = lifecycle.settings.drain_timeout
        config.timeout_graceful_shutdown = timeout
        logger.warning(
            "zerodown: uvicorn's timeout_graceful_shutdown is unbounded, so one stuck request "
            "would hold the shutdown until the process is killed; zerodown bounds it to "
            "drain_timeout=%gs (set --timeout-graceful-shutdown to choose)",
            timeout,
        )
    _warn_budget(lifecycle, float(timeout))


def _warn_budget(lifecycle: Lifecycle, drain_timeout: float | None) -> None:
    for problem in lifecycle.budget_problems(drain_timeout=drain_timeout):
        logger.warning("zerodown: %s", problem)
