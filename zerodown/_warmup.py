"""Warm-up: requests the middleware makes to the app in-process before readiness first
passes, so that a fresh process's first real users do not pay for its cold caches,
lazy imports and unopened connection pools.

It is a startup check (``warmup``): readiness waits for the startup checks, so the
instance enters the load balancer only once the warm-up finished, or gave up at its
timeout (then the check warns, and readiness goes on: a warm-up must not keep a working
release out).
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._health.model import STARTUP, Check
from ._settings import read_seconds
from ._types import ASGIApp, Message

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

#: The check's name, and the header every warm-up request carries.
NAME = "warmup"
HEADER = "X-Zerodown-Warmup"
DEFAULT_TIMEOUT = 30.0


class Warmup:
    """What to call before the first readiness: ``paths`` (GETs to the app, answered in
    process and thrown away) and ``function`` (sync or async, called once), within
    ``timeout`` seconds in all.

    ``Warmup()`` reads ``ZERODOWN_WARMUP_PATHS`` (comma-separated) and
    ``ZERODOWN_WARMUP_TIMEOUT``; without paths or a function it does nothing.
    """

    def __init__(
        self,
        paths: Sequence[str] | None = None,
        function: Callable[[], Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        if paths is None:
            raw = os.environ.get("ZERODOWN_WARMUP_PATHS", "")
            paths = [path.strip() for path in raw.split(",") if path.strip()]
        for path in paths:
            if not path.startswith("/") or not path.isascii() or not path.isprintable():
                raise ConfigurationError(
                    f"warm-up path {path!r} must start with '/' and be printable ASCII"
                )
        self.paths = tuple(paths)
        self.function = function
        seconds = read_seconds(timeout, os.environ, "ZERODOWN_WARMUP_TIMEOUT")
        self.timeout = DEFAULT_TIMEOUT if seconds is None else seconds
        self._lock = threading.Lock()
        self._started: float | None = None
        self._done: float | None = None
        self._step = ""
        self._problems: list[str] = []
        self._task: asyncio.Future[None] | None = None

    @property
    def wanted(self) -> bool:
        return bool(self.paths) or self.function is not None

    def asgi_check(
        self, app: ASGIApp, state: Callable[[], dict[str, Any] | None], taken: Collection[str]
    ) -> Check:
        """The startup check that warms ``app`` on the app's event loop, named apart from
        the checks ``taken``.

        ``state`` gives the lifespan state the server would copy into each request.
        """

        async def warm() -> None:
            for path in self.paths:
                self._step = path
                await _asgi_get(app, path, state())
            if self.function is not None:
                self._step = "the warm-up function"
                result = self.function()
                if isinstance(result, Awaitable):
                    await result

        async def check() -> dict[str, object]:
            if self._begin():
                # Kept: the loop holds only a weak reference to a task.
                self._task = asyncio.ensure_future(self._finish_async(warm()))
            return self._status()

        return Check(_name(taken), check, groups=(STARTUP,), component_type="system")

    def wsgi_check(self, app: WSGIApplication, taken: Collection[str]) -> Check:
        """The startup check that warms ``app`` in a thread of its own, named apart from
        the checks ``taken``."""

        def warm() -> None:
            try:
                for path in self.paths:
                    self._step = path
                    _wsgi_get(app, path)
                if self.function is not None:
                    self._step = "the warm-up function"
                    self.function()
            except Exception as error:  # reported by the check, never raised in a probe
                self._problems.append(f"{self._step}: {type(error).__name__}: {error}")
            self._done = time.monotonic()

        def check() -> dict[str, object]:
            if self._begin():
                threading.Thread(target=warm, name="zerodown-warmup", daemon=True).start()
            return self._status()

        return Check(_name(taken), check, groups=(STARTUP,), component_type="system")

    def _begin(self) -> bool:
        """True once: for the check run that starts the warm-up."""
        with self._lock:
            if self._started is not None:
                return False
            self._started = time.monotonic()
            return True

    async def _finish_async(self, warm: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(warm, self.timeout)
        except TimeoutError:
            pass  # _status says so
        except Exception as error:
            self._problems.append(f"{self._step}: {type(error).__name__}: {error}")
        self._done = time.monotonic()

    def _status(self) -> dict[str, object]:
        assert self._started is not None
        took = (self._done or time.monotonic()) - self._started
        if self._done is None and took < self.timeout:
            return {"status": "fail", "output": f"warming up: {self._step or 'starting'}"}
        if self._done is None or took >= self.timeout:
            output = f"the warm-up gave up after {self.timeout:g}s at {self._step}"
            return {"status": "warn", "output": output}
        if self._problems:
            return {"status": "warn", "output": "; ".join(self._problems)}
        return {"observedValue": round(took * 1000, 1), "observedUnit": "ms"}


def _name(taken: Collection[str]) -> str:
    """``warmup``, or ``warmup-2``... when another app of the process warms up too."""
    number = 1
    while (name := NAME if number == 1 else f"{NAME}-{number}") in taken:
        number += 1
    return name


async def _asgi_get(app: ASGIApp, path: str, state: dict[str, Any] | None) -> None:
    """One GET of ``path`` through ``app``, its response thrown away."""
    target, _, query = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost"), (HEADER.lower().encode(), b"1")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    if state is not None:
        scope["state"] = dict(state)
    asked = False

    async def receive() -> Message:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        """The response goes nowhere."""

    await app(scope, receive, send)


def _wsgi_get(app: WSGIApplication, path: str) -> None:
    target, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": target,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "0",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        f"HTTP_{HEADER.upper().replace('-', '_')}": "1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    body = app(environ, lambda status, headers, exc_info=None: lambda data: None)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
