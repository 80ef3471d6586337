"""The ASGI session middleware: ``scope["session"]`` (Starlette's ``request.session``)."""

from __future__ import annotations

import contextlib
from typing import Any

from .._errors import StoreError, StoreUnavailable
from .._types import ASGIApp, Message, Receive, Scope, Send
from .contract import SessionStore
from .policy import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, SessionConfig, session_headers
from .rehearsal import HEADER as REHEARSAL_HEADER
from .rehearsal import RehearsalEndpoint
from .session import LazySession, Session, storage_key
from .stores import store_or_memory

_REHEARSAL_HEADER = REHEARSAL_HEADER.lower().encode()
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
        self.rehearsal = RehearsalEndpoint()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = b"; ".join(value for name, value in scope["headers"] if name == b"cookie")
        app = self.app
        if kind == "http" and self.rehearsal.matches(
            scope["path"], _header(scope, _REHEARSAL_HEADER)
        ):
            app = self.rehearsal.asgi
        verified = self.config.read_cookie(header.decode("latin-1"))
        session = LazySession(load_async=lambda: self._open(verified))
        if not self.lazy:
            try:
                await session.load()
            except StoreUnavailable:
                await self._refuse(send, websocket=kind == "websocket")
                return
        scope["session"] = session
        if kind == "http":
            await app(scope, receive, self._sender(session, send))
            return
        # A websocket cannot set a cookie: it saves changes to the session it came with.
        await self.app(scope, receive, send)
        loaded = session.loaded
        if loaded is not None and loaded.id is not None and loaded.dirty:
            plan = self.config.plan_save(loaded, sends_cookie=False)
            with contextlib.suppress(StoreError):  # the store logged it
                await self.store.apply(plan, self.config.max_age)

    async def _open(self, verified: tuple[str, bool] | None) -> Session:
        stored, unavailable = None, False
        if verified is not None:
            try:
                stored = await self.store.load(storage_key(verified[0]), self.config.max_age)
            except StoreError:
                unavailable = True
        return self.config.open_verified(verified, stored, unavailable=unavailable)

    async def _refuse(self, send: Send, *, websocket: bool, cookie: str | None = None) -> None:
        if websocket:
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        headers = _REFUSAL_HEADERS
        if cookie is not None:
            headers = [*headers, (b"set-cookie", cookie.encode("latin-1"))]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})

    def _sender(self, session: LazySession, send: Send) -> Send:
        refused = False

        async def send_with_session(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and session.loaded is not None:
                plan = self.config.plan_save(session.loaded)
                try:
                    outcome = await self.store.apply(plan, self.config.max_age)
                except StoreError:
                    refuse, refusal_cookie = self.config.refusal(session.loaded)
                    if refuse:
                        refused = True
                        await self._refuse(send, websocket=False, cookie=refusal_cookie)
                        return
                    cookie = None
                else:
                    cookie = self.config.cookie_after(plan, outcome)
                headers = session_headers(message.get("headers", ()), cookie, read=True)
                message = {**message, "headers": headers}
            elif refused:
                return
            await send(message)

        return send_with_session


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)
