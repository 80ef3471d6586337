"""How busy this machine's CPUs were during a rehearsal: whether it, not the app, limited it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

#: A second with at least this share of every CPU busy is a saturated one.
SATURATED = 0.95
_STAT = Path("/proc/stat")


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over every CPU since boot; None off Linux."""
    try:
        fields = _STAT.read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(value) for value in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuSampler:
    """Samples the machine's CPU use every second in a thread of its own until :meth:`stop`."""

    def __init__(self, every: float = 1.0) -> None:
        #: (``time.time()`` at the end of the second, busy share of every CPU)
        self.samples: list[tuple[float, float]] = []
        self._every = every
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="zerodown-cpu", daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float]]:
        self._stopping.set()
        self._thread.join(timeout=5)
        return self.samples

    def _sample(self) -> None:
        last = _cpu_times()
        while last is not None and not self._stopping.wait(self._every):
            now = _cpu_times()
            if now is None:
                return
            busy, total = now[0] - last[0], now[1] - last[1]
            if total > 0:
                self.samples.append((time.time(), busy / total))
            last = now


def saturated_seconds(samples: list[tuple[float, float]], start: float, end: float) -> int:
    """How many sampled seconds between ``start`` and ``end`` the CPUs were saturated."""
    return sum(1 for at, busy in samples if start <= at <= end + 1 and busy >= SATURATED)
