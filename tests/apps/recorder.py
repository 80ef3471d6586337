"""The Starlette example with shutdown callbacks that write to ``ZD_EVENTS`` (a file)."""

from __future__ import annotations

import asyncio
import os

import zerodown
from examples.starlette_app import app

__all__ = ["app"]

lifecycle = zerodown.get_lifecycle()
_events = os.environ["ZD_EVENTS"]


def record(event: str) -> None:
    with open(_events, "a") as events:
        events.write(event + "\n")


lifecycle.on_draining(lambda: record("draining"))
lifecycle.on_shutdown(lambda: record("callback registered first"))


@lifecycle.on_shutdown
async def second() -> None:
    record("callback registered second")


@lifecycle.on_shutdown
def fails() -> None:
    record("callback that fails")
    raise RuntimeError("already closed")


@lifecycle.on_shutdown
async def hangs() -> None:
    record("callback that hangs")
    await asyncio.sleep(3600)
