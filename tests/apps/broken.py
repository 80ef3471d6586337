"""Releases that a rehearsal must catch.

``exits_on_term``: the Starlette example, but the process exits the moment SIGTERM
arrives, dropping what it was serving (an entrypoint that kills its server, say).
``answers_500``: ready by its probes, yet every request fails (a bad release).
"""

from __future__ import annotations

import os
import signal

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

import zerodown
from examples.starlette_app import app as example


async def exits_on_term(scope: Scope, receive: Receive, send: Send) -> None:
    # Installed at the first request: after the server and zerodown set their handlers.
    if scope["type"] == "http" and signal.getsignal(signal.SIGTERM) is not _exit_now:
        signal.signal(signal.SIGTERM, _exit_now)
    await example(scope, receive, send)


def _exit_now(signum: int, frame: object) -> None:
    os._exit(1)


async def _fail(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    response = PlainTextResponse(f"{request.url.path} broke in this release", status_code=500)
    await response(scope, receive, send)


answers_500 = zerodown.ASGIMiddleware(_fail)
