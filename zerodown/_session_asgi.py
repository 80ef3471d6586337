"""The ASGI session middleware: ``scope["session"]`` (Starlette's ``request.session``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from typing import Literal

from ._codec import Registry, UnreadableRecord
from ._errors import ConfigurationError
from ._session import (
    DEFAULT_MAX_SIZE,
    Session,
    Signer,
    new_session_id,
    storage_key,
)
from ._session_store import SessionStore, StoreUnavailable
from ._types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("zerodown")

OutagePolicy = Literal["fail", "anonymous"]
DEFAULT_MAX_AGE = 14 * 24 * 3600
_UNAVAILABLE_BODY = json.dumps(
    {"error": "sessions are unavailable for a moment; try again shortly"}
).encode()


def secrets_from_environment() -> list[str]:
    raw = os.environ.get("ZERODOWN_SESSION_SECRETS", "")
    return [secret.strip() for secret in raw.split(",") if secret.strip()]


class SessionMiddleware:
    """Server-side sessions for an ASGI app: ``request.session`` in Starlette and FastAPI.

    The cookie holds only a signed random id; the data is in ``store``. With a session
    cookie, the session is read in one round trip before the app runs (a request without
    one costs nothing); changed keys are written when the response starts.
    ``on_unavailable`` says what a request gets when the store does not answer within its
    timeout or holds a session this release cannot read: ``"fail"`` (503 with
    ``Retry-After``) or ``"anonymous"`` (an empty session that is never written, so the
    stored one is left as it is).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: SessionStore,
        secrets: Sequence[str] | None = None,
        records: Registry | None = None,
        cookie_name: str = "session",
        max_age: int = DEFAULT_MAX_AGE,
        domain: str | None = None,
        path: str = "/",
        secure: bool = True,
        same_site: Literal["lax", "strict", "none"] = "lax",
        on_unavailable: OutagePolicy = "fail",
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self.app = app
        self.store = store
        self.signer = Signer(secrets if secrets is not None else secrets_from_environment())
        self.records = records
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.max_size = max_size
        if on_unavailable not in ("fail", "anonymous"):
            raise ConfigurationError(
                f"on_unavailable must be 'fail' or 'anonymous', got {on_unavailable!r}"
            )
        self.on_unavailable = on_unavailable
        if not secure:
            logger.warning(
                "zerodown: session cookies are sent without Secure: over plain http anyone on "
                "the network can take over a session. Only for local development."
            )
        attributes = [f"Path={path}", "HttpOnly", f"SameSite={same_site.capitalize()}"]
        if secure:
            attributes.append("Secure")
        if domain:
            attributes.append(f"Domain={domain}")
        self._attributes = "; ".join(attributes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        verified = self._cookie_id(scope)
        session = await self._load(verified[0] if verified else None)
        if session is None:
            await self._refuse(scope, send)
            return
        scope["session"] = session
        if kind == "websocket":
            # A websocket cannot set a cookie: it saves changes to a session it came with.
            await self.app(scope, receive, send)
            if session.id is not None and session.writable and session.dirty:
                with contextlib.suppress(StoreUnavailable):  # the store logged the incident
                    await self._save(session, resign=False)
            return
        resign = verified is not None and verified[1] and session.id is not None
        await self.app(scope, receive, self._sender(session, send, resign))

    def _cookie_id(self, scope: Scope) -> tuple[str, bool] | None:
        """The verified id of the request's session cookie and whether to re-sign it."""
        prefix = f"{self.cookie_name}="
        for name, value in scope["headers"]:
            if name != b"cookie":
                continue
            for part in value.decode("latin-1").split(";"):
                part = part.strip()
                if part.startswith(prefix):
                    return self.signer.verify(part[len(prefix) :])
        return None

    async def _load(self, session_id: str | None) -> Session | None:
        """The request's session; None when the outage policy refuses the request."""
        stored = None
        if session_id is not None:
            try:
                stored = await self.store.load(storage_key(session_id), self.max_age)
            except StoreUnavailable:
                return self._anonymous()
        if stored is None:
            # An id the store does not hold is never adopted: a new one is issued on write.
            return Session(None, {}, records=self.records, max_size=self.max_size)
        try:
            return Session(session_id, stored, records=self.records, max_size=self.max_size)
        except UnreadableRecord as error:
            logger.warning(
                "zerodown: a session holds a value this release cannot read (%s); the stored "
                "session is left untouched and the request gets on_unavailable=%r",
                error,
                self.on_unavailable,
            )
            return self._anonymous()

    def _anonymous(self) -> Session | None:
        if self.on_unavailable == "fail":
            return None
        return Session(None, {}, records=self.records, max_size=self.max_size, writable=False)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_UNAVAILABLE_BODY)).encode()),
                    (b"retry-after", b"1"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAVAILABLE_BODY})

    def _sender(self, session: Session, send: Send, resign: bool) -> Send:
        refused = False

        async def send_with_session(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start":
                try:
                    cookie = await self._save(session, resign)
                except StoreUnavailable:
                    if self.on_unavailable == "fail":
                        refused = True
                        await self._refuse({"type": "http"}, send)
                        return
                    cookie = None
                if cookie is not None:
                    message = {
                        **message,
                        "headers": [*message.get("headers", ()), (b"set-cookie", cookie)],
                    }
            elif refused:
                return
            await send(message)

        return send_with_session

    async def _save(self, session: Session, resign: bool) -> bytes | None:
        """Write the session's changes; the Set-Cookie value to send, if any."""
        if not session.writable:
            if session.dirty:
                logger.info("zerodown: a session change was dropped: the store was unavailable")
            return None
        store, ttl = self.store, self.max_age
        if session.invalidated:
            for session_id in (session.id, session.regenerated_from):
                if session_id is not None:
                    await store.delete(storage_key(session_id))
            return self._cookie("", max_age=0) if session.id or session.regenerated_from else None
        if session.regenerated_from is not None:
            session.id = new_session_id()
            await store.move(
                storage_key(session.regenerated_from),
                storage_key(session.id),
                session.fields,
                ttl,
            )
            return self._cookie(self.signer.sign(session.id))
        if session.id is None:
            if not session.changed:
                return None  # nothing to keep: no record, no cookie
            session.id = new_session_id()
            await store.save(storage_key(session.id), ttl, session.changed, set(), new=True)
            return self._cookie(self.signer.sign(session.id))
        if session.changed or session.removed:
            written = await store.save(
                storage_key(session.id), ttl, session.changed, session.removed, new=False
            )
            if not written:
                logger.info(
                    "zerodown: a session was deleted (logout or expiry) while a request "
                    "changed it; the change was dropped"
                )
                return None
        # The store's expiry slides on every read; the cookie's slides with it.
        return self._cookie(self.signer.sign(session.id)) if self.max_age or resign else None

    def _cookie(self, value: str, *, max_age: int | None = None) -> bytes:
        age = self.max_age if max_age is None else max_age
        return f"{self.cookie_name}={value}; Max-Age={age}; {self._attributes}".encode("latin-1")
