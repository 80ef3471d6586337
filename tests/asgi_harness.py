"""Calling an ASGI app directly: scripted receive, recorded send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zerodown._types import ASGIApp, Message, Scope


@dataclass
class Exchange:
    sent: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0].get("headers", [])}

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.sent[0].get("headers", []))

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def json(self) -> Any:
        return json.loads(self.body)


def http_scope(path: str = "/", method: str = "GET", query: bytes = b"") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: ASGIApp, scope: Scope, messages: Sequence[Message] = ()) -> Exchange:
    exchange = Exchange()
    inbox = list(messages) or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        exchange.sent.append(message)

    await app(scope, receive, send)
    return exchange


def request(app: ASGIApp, path: str = "/", method: str = "GET", query: bytes = b"") -> Exchange:
    return asyncio.run(call(app, http_scope(path, method, query)))
