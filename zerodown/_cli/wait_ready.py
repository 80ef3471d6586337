"""``zerodown wait-ready``: poll a readiness endpoint until it answers 200, for deploy scripts."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass

from .procs import http_get

#: Seconds between polls: doubling from the first to the last.
FIRST_INTERVAL = 0.1
MAX_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: What the last poll saw: a status and body, or why nothing answered.
    detail: str
    waited: float
    polls: int


def readiness_url(url: str) -> str:
    """``url`` itself, or its ``/readyz`` when it names no path (``http://host:8000``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000/readyz")
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path="/readyz"))
    return url


def wait_ready(url: str, timeout: float) -> Readiness:
    """Poll ``url`` with backoff until it answers 200 or ``timeout`` seconds pass."""
    started = time.monotonic()
    deadline = started + timeout
    interval = FIRST_INTERVAL
    polls = 0
    while True:
        polls += 1
        status, body = http_get(url, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        waited = time.monotonic() - started
        if status == 200:
            return Readiness(True, f"200 {body.strip()}", waited, polls)
        detail = f"{status} {body.strip()}" if status is not None else f"no answer: {body}"
        left = deadline - time.monotonic()
        if left <= 0:
            return Readiness(False, detail, waited, polls)
        time.sleep(min(interval, left))
        interval = min(MAX_INTERVAL, interval * 2)
