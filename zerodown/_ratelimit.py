"""Log lines that a client can cause, at most once per interval each."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """Logs a message at most once per ``interval`` s per key, with the count of the ones
    left out since, so that one bad session or one broken client cannot fill the log.

    Keys are the kinds of problem (a few, chosen by zerodown), never a client's input.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._left_out[key] = self._left_out.get(key, 0) + 1
                return
            self._last[key] = now
            left_out = self._left_out.pop(key, 0)
        if left_out:
            message += f" ({left_out} more like it in the last {self._interval:g}s not logged)"
        self._logger.log(level, message, *args)
