"""A uvicorn worker for gunicorn whose stop fits gunicorn's deadline and signal meanings.

The upstream worker (uvicorn-worker 0.4) leaves uvicorn's drain unbounded, so the master's
SIGKILL at ``graceful_timeout`` cuts the lifespan shutdown, and it maps QUIT to a flag
uvicorn never reads, so a quick stop serves on until that SIGKILL (docs/gunicorn.md,
"zerodown.gunicorn.UvicornWorker").
"""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.config import Config
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker as _UpstreamWorker  # type: ignore[import-untyped]

from .._lifecycle import Lifecycle, get_lifecycle
from .._settings import BUDGET_MARGIN

#: The least time left for the drain whatever the callbacks' budget, in seconds.
MIN_DRAIN = 1
#: Seconds a worker that reached ``max_requests`` keeps serving with ``Connection: close``
#: before it stops, so that kept-alive clients leave on a response instead of finding
#: their idle connection closed under them (gunicorn's own workers linger 2 s too).
RECYCLE_WINDOW = 2.0


def drain_bound(graceful_timeout: float, lifecycle: Lifecycle, configured: int | None) -> int:
    """uvicorn's drain timeout: what is left of gunicorn's ``graceful_timeout`` once the
    shutdown callbacks and a margin are set aside, never more than a bound already chosen.

    Whole seconds (uvicorn's setting is an int), rounded down so the deadline holds.
    """
    left = graceful_timeout - lifecycle.callbacks_budget - BUDGET_MARGIN / 2
    bound = max(MIN_DRAIN, math.floor(left))
    return bound if configured is None else min(bound, configured)


class _WorkerServer(Server):
    """uvicorn's server, stopping as a gunicorn worker should."""

    def __init__(self, config: Config, worker: UvicornWorker) -> None:
        super().__init__(config)
        self._worker = worker
        self._configured_drain = config.timeout_graceful_shutdown
        #: Why this worker is to retire, once gunicorn replaces it (read on the loop).
        self._retire_because: str | None = None
        self._retiring_since: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            self.quick_stop()
            return
        replaced = sig == signal.SIGTERM and not get_lifecycle().is_draining
        if replaced and self._retire_because is None and not self.should_exit:
            # gunicorn stops this worker while the service stays up (a HUP reload, fewer
            # workers): uvicorn would close every idle kept-alive connection now, racing the
            # proxy about to send on one. Retire first, as for max_requests. A second
            # SIGTERM, or one while the instance drains, stops at once.
            self._retire_because = "the gunicorn master replaces this worker (SIGTERM)"
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._retiring_since is None and self._retire_because is not None:
            self._retire(self._retire_because)
        if self._retiring_since is not None:
            await super().on_tick(counter)  # its own answer is max_requests', met already
            waited = time.monotonic() - self._retiring_since
            return self.should_exit or not self.server_state.connections or waited >= RECYCLE_WINDOW
        if not await super().on_tick(counter) or self.should_exit:
            return self.should_exit
        self._retire("max_requests reached; the worker is recycled")
        return not self.server_state.connections

    def _retire(self, reason: str) -> None:
        """Stop accepting (the other workers share the listener) and close each connection
        after its next response; the main loop stops once every connection left, or when
        the window is over."""
        self._retiring_since = time.monotonic()
        for server in self.servers:
            server.close()
        get_lifecycle().server.start_retiring(reason)

    def quick_stop(self) -> None:
        """gunicorn's QUIT/INT meaning: exit at once, without draining or lifespan shutdown."""
        self._worker.cfg.worker_int(self._worker)
        self.should_exit = True
        self.force_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Computed now: the app registers its shutdown callbacks after the worker started,
        # and the time spent retiring counts against gunicorn's deadline too.
        retired_for = (
            0.0 if self._retiring_since is None else time.monotonic() - self._retiring_since
        )
        self.config.timeout_graceful_shutdown = drain_bound(
            float(self._worker.cfg.graceful_timeout) - retired_for,
            get_lifecycle(),
            self._configured_drain,
        )
        await super().shutdown(sockets)


class UvicornWorker(_UpstreamWorker):  # type: ignore[misc]
    """``gunicorn -k zerodown.gunicorn.UvicornWorker``: uvicorn-worker's worker, plus

    - uvicorn's drain bounded by ``graceful_timeout`` minus the shutdown callbacks' budget,
      so the lifespan shutdown and the callbacks run before the master's SIGKILL;
    - QUIT and INT as a quick stop, as for gunicorn's own workers;
    - a worker that reached ``max_requests``, or that gunicorn replaces (HUP), retires for
      up to ``RECYCLE_WINDOW`` s before it stops: no new connections, ``Connection: close``
      on every response, so that kept-alive clients leave on a response instead of finding
      their idle connection closed under them.
    """

    cfg: Any
    config: Config

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = _WorkerServer(self.config, self)
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, server.quick_stop)
        # The sockets themselves, not gunicorn's wrappers of them: uvloop detaches a socket
        # it closes, but closes a wrapper's socket a second time once libuv closed its
        # descriptor (gunicorn logs "Bad file descriptor"), and a descriptor another thread
        # opened in between would be closed under it.
        listeners = [getattr(listener, "sock", listener) for listener in self.sockets]
        await server.serve(sockets=listeners)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
