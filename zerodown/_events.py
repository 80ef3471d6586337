"""Callbacks that one part of zerodown holds for another: the openly held coupling between
the lifecycle, the health registry and the middleware."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger("zerodown")


class Subscribers:
    """Callbacks to call when ``what`` happens, in the order they subscribed.

    A callback that raises is logged and the next one still runs: one broken subscriber
    must not keep the others from hearing of a shutdown.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._callbacks: list[Callable[[], object]] = []

    def subscribe(self, callback: Callable[[], object]) -> None:
        self._callbacks.append(callback)

    def notify(self) -> None:
        for callback in list(self._callbacks):
            try:
                callback()
            except Exception:
                logger.exception("zerodown: %s callback %r failed", self._what, callback)
