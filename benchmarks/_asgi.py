"""Calling an ASGI app in-process, as the in-process benchmarks do."""

from __future__ import annotations

from zerodown._cli.procs import LOOPBACK
from zerodown._types import Message, Scope

REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def get_scope(path: str, client: str = LOOPBACK) -> Scope:
    """The scope of ``GET path``; copy it per call, as servers give each request its own."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": (client, 1),
        "server": (LOOPBACK, 2),
    }
