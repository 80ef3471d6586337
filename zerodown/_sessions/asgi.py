"""The ASGI session middleware: ``scope["session"]`` (Starlette's ``request.session``)."""

from __future__ import annotations

import contextlib
from typing import Any

from .._errors import StoreUnavailable
from .._types import ASGIApp, Message, Receive, Scope, Send
from .contract import SessionStore
from .policy import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, SessionConfig
from .session import LazySession, Session, storage_key
from .stores import store_or_memory

_REFUSAL_HEADERS = [(name.encode(), value.encode()) for name, value in UNAVAILABLE_HEADERS]


class SessionMiddleware:
    """Server-side sessions for an ASGI app: ``request.session`` in Starlette and FastAPI.

    The cookie holds only a signed random id; the data is in ``store``. With a session
    cookie, the session is read in one round trip before the app runs (a request without
    one costs nothing); with ``lazy=True`` only when the app calls
    ``await request.session.load()``, so a route that never does costs nothing either.
    Changed keys are written when the response starts.
    ``on_unavailable`` says what a request gets when the store does not answer within its
    timeout or holds a session this release cannot read: ``"fail"`` (503 with
    ``Retry-After``; under ``lazy=True``, ``load()`` raises :class:`StoreUnavailable`) or
    ``"anonymous"`` (an empty session that is never written, so the stored one is left as
    it is). The other options are :class:`SessionConfig`'s.
    """

    def __init__(
        self, app: ASGIApp, *, store: SessionStore | None = None, lazy: bool = False, **options: Any
    ) -> None:
        self.app = app
        self.store = store_or_memory(store)
        self.lazy = lazy
        self.config = SessionConfig(**options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = b"; ".join(value for name, value in scope["headers"] if name == b"cookie")
        session_id = self.config.cookie_id(header.decode("latin-1"))
        session = LazySession(load_async=lambda: self._open(session_id))
        if not self.lazy:
            try:
                await session.load()
            except StoreUnavailable:
                await self._refuse(send, websocket=kind == "websocket")
                return
        scope["session"] = session
        if kind == "http":
            await self.app(scope, receive, self._sender(session, send))
            return
        # A websocket cannot set a cookie: it saves changes to the session it came with.
        await self.app(scope, receive, send)
        loaded = session.loaded
        if loaded is not None and loaded.id is not None and loaded.dirty:
            with contextlib.suppress(StoreUnavailable):  # the store logged the incident
                await self._save(loaded)

    async def _open(self, session_id: str | None) -> Session:
        stored, unavailable = None, False
        if session_id is not None:
            try:
                stored = await self.store.load(storage_key(session_id), self.config.max_age)
            except StoreUnavailable:
                unavailable = True
        return self.config.open(session_id, stored, unavailable=unavailable)

    async def _save(self, session: Session) -> str | None:
        """Write the session's changes; the Set-Cookie value to send, if any."""
        plan = self.config.plan_save(session)
        outcome = await self.store.apply(plan, self.config.max_age)
        return self.config.cookie_after(plan, outcome)

    async def _refuse(self, send: Send, *, websocket: bool) -> None:
        if websocket:
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        await send({"type": "http.response.start", "status": 503, "headers": _REFUSAL_HEADERS})
        await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})

    def _sender(self, session: LazySession, send: Send) -> Send:
        refused = False

        async def send_with_session(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and session.loaded is not None:
                try:
                    cookie = await self._save(session.loaded)
                except StoreUnavailable:
                    if self.config.on_unavailable == "fail":
                        refused = True
                        await self._refuse(send, websocket=False)
                        return
                    cookie = None
                if cookie is not None:
                    headers = [*message.get("headers", ()), (b"set-cookie", cookie.encode())]
                    message = {**message, "headers": headers}
            elif refused:
                return
            await send(message)

        return send_with_session
