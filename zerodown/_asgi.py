"""The ASGI middleware: probes, in-flight counting, ``Connection: close`` and the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from time import monotonic

from ._checks import event_loop_lag
from ._health import Health, get_health
from ._lifecycle import Lifecycle, get_lifecycle
from ._probes import Probe, ProbePaths, ProbeRequest, answer_probe, checks_for, prestop_wait
from ._signals import install_signal_relay
from ._types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("zerodown")


class ASGIMiddleware:
    """Wrap an ASGI app so that it can be rotated without failed requests.

    ``app = zerodown.ASGIMiddleware(app)`` or ``app.add_middleware(zerodown.ASGIMiddleware)``.
    The probe paths (and ``/readyz/NAME`` for one check) are answered here and never reach
    the app; their checks come from ``health`` (the process's registry by default), to
    which this adds an event-loop lag liveness check. On the server's lifespan startup it
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
        handle_signals: bool = True,
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle or get_lifecycle()
        self.health = health or get_health()
        self.health.add_process_check(event_loop_lag())
        self._paths = probe_paths or ProbePaths()
        self._probes = self._paths.table()
        self._check_prefixes = self._paths.check_prefixes()
        self._handle_signals = handle_signals
        self._disabled = self.lifecycle.settings.disabled
        # Set once the server ran the lifespan, or served without one; gates the hot path.
        self._serving = False
        # The lifecycle's in-flight table, bound once for the hot path (see __call__).
        self._active = self.lifecycle._active
        self._tokens = self.lifecycle._tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path: an app request once the server is up. It counts in the lifecycle's
        # table and wraps ``send`` inline because on this path each Python call costs about
        # as much as the whole count.
        if (
            self._serving
            and scope["type"] == "http"
            and scope["path"] not in self._probes
            and not scope["path"].startswith(self._check_prefixes)
        ):
            lifecycle = self.lifecycle

            # Retiring each kept-alive connection after a complete response moves pooled
            # clients and proxies to another instance without the race of closing an idle
            # one. A plain function returning the server's awaitable, not a coroutine: an
            # extra coroutine frame per message costs more than the check.
            def send_closing(message: Message) -> Awaitable[None]:
                if lifecycle._leaving and message["type"] == "http.response.start":
                    message = _with_connection_close(message)
                return send(message)

            active = self._active
            token = next(self._tokens)
            active[token] = monotonic()
            try:
                await self.app(scope, receive, send_closing)
            finally:
                active.pop(token, None)
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
            route = self._paths.route(scope["path"])
            if route is None:
                await self(scope, receive, send)
            else:
                await self._answer_probe(*route, scope, send)
            return
        if kind != "websocket":
            await self.app(scope, receive, send)
            return
        token = self.lifecycle.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.lifecycle.request_finished(token)

    async def _answer_probe(
        self, probe: Probe, check_name: str | None, scope: Scope, send: Send
    ) -> None:
        method = scope["method"]
        if probe is Probe.PRESTOP:
            await asyncio.sleep(prestop_wait(method, self.lifecycle))
        client = scope.get("client")
        request = ProbeRequest(
            probe,
            method,
            check_name,
            scope.get("query_string", b"").decode("latin-1"),
            next((v for k, v in scope["headers"] if k.lower() == b"authorization"), None),
            client[0] if client else None,
        )
        checks = checks_for(request, self.lifecycle, self.health)
        report = None if checks is None else await self.health.run(checks)
        answer = answer_probe(request, self.lifecycle, self.health, report)
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _serving_without_lifespan(self) -> None:
        # Servers run the lifespan startup before they serve, so a request arriving first
        # means this server runs none: the app is as started as it will get.
        self._serving = True
        logger.warning(
            "zerodown: the server runs no ASGI lifespan, so zerodown cannot hold SIGTERM back; "
            "enable lifespan (uvicorn --lifespan on) or use a Kubernetes preStop sleep"
        )
        self.lifecycle.mark_ready()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._serving = True
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
        except Exception:
            if startup_answered:
                raise
            logger.info(
                "zerodown: the app does not speak lifespan; zerodown answers it", exc_info=True
            )
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
        if self._handle_signals and self.lifecycle.shutdown_driven_by is None:
            install_signal_relay(self.lifecycle)
        self.lifecycle.mark_ready()


def _with_connection_close(message: Message) -> Message:
    headers = [
        (name, value) for name, value in message.get("headers", ()) if name.lower() != b"connection"
    ]
    headers.append((b"connection", b"close"))
    return {**message, "headers": headers}
