"""The other workers of one pre-fork server, told when the preStop endpoint was called.

A preStop call reaches one worker of a server that runs several (uWSGI, hypercorn or
granian with workers). The others would go on answering readiness 200 and keeping their
connections open while the pod is taken out, so a load balancer that checks the pod would
keep sending to it until its listener closes. The worker that was called leaves a mark
named after its master (PID and start time, so that a reused PID finds none); every worker
of that master that answers a probe finds it and drains too.

Workers are recognised through their server's own API: ``uwsgi.masterpid()`` inside uWSGI,
and ``multiprocessing.parent_process()`` for hypercorn's and granian's workers. Any other
process has no siblings here (gunicorn's master tells its workers itself, and uvicorn
serves in one process).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("zerodown")


def master_pid() -> int | None:
    """The PID of the master this process is a worker of, if a pre-fork server's."""
    uwsgi = sys.modules.get("uwsgi")  # uWSGI puts its own module there, in its processes
    if uwsgi is not None and callable(getattr(uwsgi, "masterpid", None)):
        return int(uwsgi.masterpid()) or None
    parent = multiprocessing.parent_process()
    return None if parent is None else parent.pid


class Siblings:
    """The mark shared by the workers of the master ``pid``."""

    def __init__(self, pid: int) -> None:
        self.mark = Path(tempfile.gettempdir()) / f"zerodown-prestop-{pid}-{_start_time(pid)}"

    def announce(self) -> None:
        try:
            self.mark.touch()
        except OSError as error:
            logger.warning(
                "zerodown: the other workers could not be told of the preStop call (%s); "
                "they drain at SIGTERM",
                error,
            )

    def announced(self) -> bool:
        return self.mark.exists()


def siblings() -> Siblings | None:
    """This worker's siblings, or None when it has none."""
    pid = master_pid()
    return None if pid is None else Siblings(pid)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc``; empty elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name, in parentheses, may hold spaces: count fields after its end.
    return stat.rpartition(")")[2].split()[19]
