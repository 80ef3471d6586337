"""Holding a server's SIGTERM back for the lame-duck window, then handing it over.

uvicorn installs ``Server.handle_exit`` with ``signal.signal`` inside ``serve()``, before
the lifespan startup runs (uvicorn/server.py, ``capture_signals``). A handler installed
during lifespan startup therefore sees uvicorn's as the previous one and can call it later.
Servers that dispatch signals through asyncio (gunicorn ``-k asgi``, hypercorn) cannot be
held back this way: their loop reacts to the wake-up fd whatever ``signal.signal`` says.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

from ._lifecycle import Lifecycle

logger = logging.getLogger("zerodown")

SignalHandler = Any  # what signal.getsignal returns: a callable, an int, or None
_RELAYED = (signal.SIGTERM, signal.SIGINT)
_FALLBACK_ADVICE = (
    "under gunicorn add zerodown's hooks (from zerodown.gunicorn import * in gunicorn.conf.py); "
    "elsewhere delay the shutdown with a Kubernetes preStop sleep or zerodown's preStop endpoint"
)


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
        server_handlers: dict[int, SignalHandler],
    ) -> None:
        self._lifecycle = lifecycle
        self._loop = loop
        self._server_handlers = server_handlers
        self._timer: asyncio.TimerHandle | None = None
        self._handed_over = False
        self._signalled = False

    def install(self) -> None:
        for signum in self._server_handlers:
            signal.signal(signum, self._on_signal)

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
        handler = self._server_handlers[signum]
        handler(signum, None)


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
    if _dispatched_by_event_loop(term_handler):
        logger.warning(
            "zerodown: this server handles SIGTERM through asyncio (gunicorn -k asgi, "
            "hypercorn), which zerodown cannot delay from inside the app; %s",
            _FALLBACK_ADVICE,
        )
        return None
    if not callable(term_handler):
        logger.warning(
            "zerodown: the server installed no SIGTERM handler, so there is no graceful stop to "
            "delay; run the app under uvicorn or gunicorn, or use a Kubernetes preStop sleep"
        )
        return None
    relayed = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    relay = ServerSignalRelay(lifecycle, asyncio.get_running_loop(), relayed)
    relay.install()
    _bound_uvicorn_drain(term_handler, lifecycle)
    return relay


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
