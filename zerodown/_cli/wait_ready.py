"""``zerodown wait-ready``: poll a readiness endpoint until it answers 200, for deploy scripts."""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse
from dataclasses import dataclass

from .._polling import poll
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
    polls = 0
    detail = ""

    def answered() -> bool:
        nonlocal polls, detail
        polls += 1
        status, body = http_get(url, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        detail = f"{status} {body.strip()}" if status is not None else f"no answer: {body}"
        return status == 200

    ready = poll(
        answered, timeout=timeout, interval=FIRST_INTERVAL, backoff=2, max_interval=MAX_INTERVAL
    )
    return Readiness(bool(ready), detail, time.monotonic() - started, polls)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wait = commands.add_parser(
        "wait-ready",
        help="wait until an app is ready (for deploy scripts)",
        description="Poll a readiness endpoint with backoff; exit 0 once it answers 200, "
        "1 with the last answer when the timeout passes.",
    )
    wait.add_argument("url", help="the readiness URL, or the app's base URL for its /readyz")
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")


def run(args: argparse.Namespace) -> int:
    try:
        url = readiness_url(args.url)
    except ValueError as error:
        print(f"zerodown wait-ready: {error}", file=sys.stderr)
        return 2
    outcome = wait_ready(url, args.timeout)
    if outcome.ready:
        print(f"ready: {url} answered 200 after {outcome.waited:.1f}s")
        return 0
    print(
        f"not ready after {outcome.waited:.1f}s ({outcome.polls} polls): {url} last gave "
        f"{outcome.detail}",
        file=sys.stderr,
    )
    return 1
