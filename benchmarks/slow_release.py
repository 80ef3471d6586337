"""A release 500 ms slower per request than the Starlette example: a real latency regression
that the rehearsal's verdict must catch (``benchmarks/rehearsal_verdicts.py``)."""

from __future__ import annotations

import asyncio

import zerodown
from examples.starlette_app import inner
from zerodown._types import Receive, Scope, Send

EXTRA_SECONDS = 0.5


async def _slower(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await asyncio.sleep(EXTRA_SECONDS)
    await inner(scope, receive, send)


app = zerodown.ASGIMiddleware(_slower)
