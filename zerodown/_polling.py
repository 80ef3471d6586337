"""Waiting for a condition with a deadline: the one poll loop of the runtime and the tooling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    backoff: float = 1.0,
    max_interval: float | None = None,
) -> T | None:
    """Call ``probe`` every ``interval`` s until it returns something other than None or
    False, and return that; None once ``timeout`` s passed. ``probe`` may raise to give up.

    ``probe`` runs at least once, also with ``timeout`` 0, and once more at the deadline,
    so that a condition met while sleeping is not reported as a timeout. With ``backoff``
    above 1 the interval grows by that factor after each call, up to ``max_interval``.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))
        interval *= backoff
        if max_interval is not None:
            interval = min(interval, max_interval)
