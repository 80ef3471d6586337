"""The rehearsal's live timeline."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from .k6 import RequestRecord


class Progress:
    """The rehearsal's timeline: events and a running count of requests, as it happens.

    With ``out`` a terminal, the count is one line rewritten in place; otherwise a line
    every few seconds. ``out=None`` records the events without printing.
    """

    def __init__(self, out: TextIO | None = sys.stdout) -> None:
        self._out = out
        self._live = out is not None and out.isatty()
        self._lock = threading.Lock()
        self._started = time.time()
        self._status = ""
        self.phase = "starting"
        #: (``time.time()``, what happened)
        self.events: list[tuple[float, str]] = []
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None

    def event(self, text: str) -> None:
        now = time.time()
        offset = now - self._started
        with self._lock:
            self.events.append((now, text))
            self._write(f"[{offset:6.1f}s] {text}", keep=True)

    def _write(self, line: str, *, keep: bool) -> None:
        if self._out is None:
            return
        if self._live:
            end = "\n" if keep else ""
            self._out.write(f"\r\033[K  {line}{end}")
            if keep and self._status:
                self._out.write(f"  {self._status}")
        else:
            self._out.write(f"  {line}\n")
        self._out.flush()

    def watch(self, records: Callable[[], Sequence[RequestRecord]]) -> None:
        """Count requests and failures of the load's records until :meth:`stop`."""
        every = 1.0 if self._live else 5.0

        def tick() -> None:
            while not self._stopping.wait(every):
                seen = records()
                failed = sum(record.failed for record in seen)
                offset = time.time() - self._started
                with self._lock:
                    self._status = (
                        f"[{offset:6.1f}s] {self.phase}: {len(seen):,} requests, {failed:,} failed"
                    )
                    self._write(self._status, keep=not self._live)

        self._ticker = threading.Thread(target=tick, name="zerodown-progress", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=6)
            self._ticker = None
        if self._live and self._out is not None:
            self._out.write("\r\033[K")
            self._out.flush()
        self._status = ""
        self._stopping.clear()
