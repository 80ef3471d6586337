"""The session endpoint that ``zerodown rehearse`` calls to see whether users stay logged in.

It exists only while ``ZERODOWN_REHEARSAL_TOKEN`` is set in the instance's environment
(the rehearsal sets a random one per run; production never has it), and answers only
requests that carry that token in ``X-Zerodown-Rehearsal``. Every call adds one to a
counter in the caller's session and answers the new count, so the rehearsal can tell a
session that was lost (the count starts again at 1) from a write that was lost (the count
went back) without knowing anything about the app.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from .._rehearsal_env import TOKEN_VARIABLE
from .._types import Receive, Scope, Send
from .session import ENVIRON_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PATH = "/_zerodown/rehearsal/session"
HEADER = "X-Zerodown-Rehearsal"

#: The session key the counter lives in.
COUNTER_KEY = "zerodown.rehearsal.count"
_HEADERS = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


class RehearsalEndpoint:
    """Recognises the rehearsal's calls; the middleware answers them with :meth:`count`."""

    def __init__(self, token: str | None = None) -> None:
        token = os.environ.get(TOKEN_VARIABLE) if token is None else token
        self._token = token.encode() if token else None

    def matches(self, path: str, header: bytes | str | None) -> bool:
        if self._token is None or path != PATH or header is None:
            return False
        given = header.encode("latin-1") if isinstance(header, str) else header
        return hmac.compare_digest(given, self._token)

    @staticmethod
    def count(session: MutableMapping[str, Any]) -> bytes:
        """Add one to the caller's counter; the JSON body that answers the call."""
        count = session.get(COUNTER_KEY, 0)
        session[COUNTER_KEY] = (count if isinstance(count, int) else 0) + 1
        return json.dumps({"count": session[COUNTER_KEY]}).encode()

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.count(await scope["session"].load())
        headers = [(name.lower().encode(), value.encode()) for name, value in _HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        body = self.count(environ[ENVIRON_KEY])
        start_response("200 OK", list(_HEADERS))
        return [body]
