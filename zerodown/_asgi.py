"""The ASGI middleware: probes, in-flight counting, ``Connection: close`` and the lifespan."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable
from time import monotonic
from typing import Any

from ._health.checks import event_loop_lag
from ._health.registry import Health, get_health
from ._lifecycle import Lifecycle, get_lifecycle
from ._probes import Endpoint, ProbeAccess, ProbePaths, ProbeRequest, Probes
from ._rehearsal_env import instance_header
from ._signals import install_signal_relay
from ._types import ASGIApp, Message, Receive, Scope, Send
from ._warmup import Warmup

logger = logging.getLogger("zerodown")

#: Seconds between refreshes of the clock that stamps requests on the hot path.
_CLOCK_TICK = 0.1


class ASGIMiddleware:
    """Wrap an ASGI app so that it can be rotated without failed requests.

    ``app = zerodown.ASGIMiddleware(app)`` or ``app.add_middleware(zerodown.ASGIMiddleware)``.
    The probe paths (and ``/readyz/NAME`` for one check) are answered here and never reach
    the app; their checks come from ``health`` (the process's registry by default), to
    which this adds an event-loop lag liveness check, and ``probe_access`` says what they
    show and to whom; ``warmup`` (by default from ``ZERODOWN_WARMUP_PATHS``) what to call
    in-process before readiness first passes. On the server's lifespan startup it
    installs the delayed SIGTERM handling (``handle_signals=False`` leaves signals alone,
    for servers whose stop is driven from elsewhere).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifecycle: Lifecycle | None = None,
        health: Health | None = None,
        probe_paths: ProbePaths | None = None,
        probe_access: ProbeAccess | None = None,
        handle_signals: bool = True,
        warmup: Warmup | None = None,
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle or get_lifecycle()
        self.health = health or get_health()
        self.health.add_process_check(event_loop_lag())
        # The lifespan's state, which a server copies into every request's scope.
        self._lifespan_state: dict[str, Any] | None = None
        warmup = warmup or Warmup()
        if warmup.wanted:
            self.health.add(
                warmup.asgi_check(
                    app,
                    lambda: self._lifespan_state,
                    [c.name for c in self.health.checks],
                )
            )
        self._probes = Probes(self.lifecycle, self.health, probe_paths, probe_access)
        # Bound once for the hot path; the probes add to it in place.
        self._routes = self._probes.routes
        self._handle_signals = handle_signals
        self._disabled = self.lifecycle.settings.disabled
        # Set once the server ran the lifespan, or served without one.
        self._serving = False
        # Serving and not leaving: app requests take the hot path in __call__.
        self._hot = False
        # The hot path stamps requests with this clock, which the serving loop refreshes
        # every _CLOCK_TICK s, instead of calling monotonic(): on a virtual machine a clock
        # read costs a tenth of the whole per-request budget. While that loop runs, ages are
        # at most a tick high.
        self._now = monotonic()
        self._clock: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The lifecycle's in-flight table, bound once for the hot path.
        self._active = self.lifecycle.requests.started
        # In a rehearsal that asks for it, every response names the instance; such
        # requests leave the hot path, which passes ``send`` on unwrapped.
        self._instance_header = instance_header()
        self.lifecycle.leaving.subscribe(self._leave)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path: an app request while serving and not leaving. It counts the request
        # in the lifecycle's table, keyed by its ``send`` (unique to a request, and the handle
        # ``_leave`` needs), and passes ``send`` on unwrapped: on this path each Python call
        # costs about as much as the whole count, and a wrapper is called per message.
        if self._hot and scope["type"] == "http" and scope["path"] not in self._routes:
            active = self._active
            active[send] = self._now
            try:
                await self.app(scope, receive, send)
            finally:
                active.pop(send, None)
            return
        await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._disabled:
            await self.app(scope, receive, send)
            return
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if not self._serving:
            self._serving_without_lifespan()
        if kind == "http":
            route = self._routes.get(scope["path"])
            if route is None:
                await self._serve_closing(scope, receive, send)
            else:
                await self._answer_probe(*route, scope, send)
            return
        if kind != "websocket":
            await self.app(scope, receive, send)
            return
        await self._serve_counted(scope, receive, send)

    async def _serve_closing(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An app request off the hot path (leaving, or the first one without a lifespan):
        its response closes the connection if it starts while this process is leaving."""
        lifecycle = self.lifecycle

        # A plain function returning the server's awaitable, not a coroutine: an extra
        # coroutine frame per message costs more than the check.
        named = self._instance_header

        def send_closing(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                if named is not None:
                    message = {**message, "headers": [*message.get("headers", ()), named]}
                if lifecycle.is_leaving:
                    message = _with_connection_close(message)
            return send(message)

        await self._serve_counted(scope, receive, send_closing)

    async def _serve_counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self.lifecycle.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.lifecycle.request_finished(token)

    def _leave(self) -> None:
        # Responses from now on close their connections: requests that start now take
        # _serve_closing. Those already in flight passed ``send`` on unwrapped; under uvicorn
        # with httptools the server itself adds ``connection: close`` and closes after the
        # response once its request cycle is told not to keep the connection alive. Other
        # servers close those connections at their own graceful stop, once the load
        # balancer stopped sending there.
        self._hot = False
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # On the loop, also when called from gunicorn's watch thread: the cycles are the
            # loop's to change, and a request that saw _hot still True is in the table by
            # then, as the hot path never yields between the two.
            loop.call_soon_threadsafe(self._close_after_in_flight)

    def _close_after_in_flight(self) -> None:
        cycle_class = _httptools_cycle_class()
        if cycle_class is None:
            return
        for send in list(self._active):
            cycle: Any = getattr(send, "__self__", None)
            if type(cycle) is cycle_class and not cycle.response_started:
                cycle.keep_alive = False

    async def _answer_probe(
        self, probe: Endpoint, check_name: str | None, scope: Scope, send: Send
    ) -> None:
        method = scope["method"]
        if probe is Endpoint.PRESTOP:
            await asyncio.sleep(self._probes.prestop_wait(method))
        client = scope.get("client")
        request = ProbeRequest(
            probe,
            method,
            check_name,
            scope.get("query_string", b"").decode("latin-1"),
            next((v for k, v in scope["headers"] if k.lower() == b"authorization"), None),
            client[0] if client else None,
        )
        checks = self._probes.checks_for(request)
        report = None if checks is None else await self.health.run(checks)
        answer = self._probes.answer(request, report)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _serving_without_lifespan(self) -> None:
        # Servers run the lifespan startup before they serve, so a request arriving first
        # means this server runs none: the app is as started as it will get.
        self._serving = True
        self._start_serving()
        logger.warning(
            "zerodown: the server runs no ASGI lifespan, so zerodown cannot hold SIGTERM back; "
            "enable lifespan (uvicorn --lifespan on) or use a Kubernetes preStop sleep"
        )
        self.lifecycle.mark_ready()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._serving = True
        self._lifespan_state = scope.get("state")
        startup_received = False
        startup_answered = False

        async def receive_lifespan() -> Message:
            nonlocal startup_received
            message = await receive()
            if message["type"] == "lifespan.startup":
                startup_received = True
            elif message["type"] == "lifespan.shutdown":
                # Our callbacks were registered inside the app's lifespan, so they end first.
                await self.lifecycle.shutdown()
            return message

        async def send_lifespan(message: Message) -> None:
            nonlocal startup_answered
            if message["type"] == "lifespan.startup.complete":
                startup_answered = True
                self._started()
            elif message["type"] == "lifespan.startup.failed":
                startup_answered = True
            await send(message)

        try:
            await self.app(scope, receive_lifespan, send_lifespan)
        except Exception as error:
            if startup_answered:
                raise
            # Expected of Django and others on every boot: one line, the traceback for
            # whoever debugs.
            logger.info(
                "zerodown: the app does not speak lifespan (%s: %s); zerodown answers it",
                type(error).__name__,
                error,
            )
            logger.debug("the app's answer to the lifespan scope", exc_info=True)
        if startup_answered:
            return
        # The app raised on, or ignored, the lifespan scope: speak the protocol for it.
        if not startup_received:
            await receive()
        self._started()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await self.lifecycle.shutdown()
        await send({"type": "lifespan.shutdown.complete"})

    def _started(self) -> None:
        self.health.start(asyncio.get_running_loop())
        if self._handle_signals and self.lifecycle.server.shutdown_driven_by is None:
            install_signal_relay(self.lifecycle)
        self.lifecycle.mark_ready()
        self._start_serving()

    def _start_serving(self) -> None:
        """Keep the hot path's clock on the running loop, then let requests take it."""
        loop = asyncio.get_running_loop()
        if self._clock is not None:  # a lifespan ran before, on another loop
            self._clock.cancel()

        def tick() -> None:
            self._now = monotonic()
            self._clock = loop.call_later(_CLOCK_TICK, tick)

        tick()
        self._loop = loop
        # In this order, a leave that lands in between still ends with _hot False.
        self._hot = self._instance_header is None
        if self.lifecycle.is_leaving:
            self._hot = False


def _with_connection_close(message: Message) -> Message:
    headers = [
        (name, value) for name, value in message.get("headers", ()) if name.lower() != b"connection"
    ]
    headers.append((b"connection", b"close"))
    return {**message, "headers": headers}


def _httptools_cycle_class() -> type[Any] | None:
    """uvicorn's httptools request cycle, when this process serves with it.

    uvicorn (0.54 verified) adds ``connection: close`` to a response that starts after the
    cycle's ``keep_alive`` turned False, and closes the connection after it; its own
    graceful stop uses the same flag. h11's cycle closes without saying so, so it is left
    alone.
    """
    module = sys.modules.get("uvicorn.protocols.http.httptools_impl")
    cycle_class = getattr(module, "RequestResponseCycle", None)
    return cycle_class if isinstance(cycle_class, type) else None
