"""The WSGI session middleware (``environ["zerodown.session"]``) and Flask's session
interface on top of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._session import Session, storage_key
from ._session_core import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, SessionConfig
from ._session_store import SessionStore, StoreUnavailable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Where the WSGI middleware puts the request's session.
ENVIRON_KEY = "zerodown.session"
_REFUSAL_STATUS = "503 Service Unavailable"


class WSGISessionMiddleware:
    """Server-side sessions for a WSGI app, in ``environ["zerodown.session"]``.

    Read before the app runs when the request has a session cookie; written when the app
    calls ``start_response``. Options and rules as for :class:`SessionMiddleware`.
    """

    def __init__(self, app: WSGIApplication, *, store: SessionStore, **options: Any) -> None:
        self.app = app
        self.store = store
        self.config = SessionConfig(**options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = self._open(self.config.cookie_id(environ.get("HTTP_COOKIE", "")))
        if session is None:
            start_response(_REFUSAL_STATUS, list(UNAVAILABLE_HEADERS))
            return [UNAVAILABLE_BODY]
        environ[ENVIRON_KEY] = session
        refused = False

        def start_with_session(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            nonlocal refused
            try:
                cookie = self._save(session)
            except StoreUnavailable:
                if self.config.on_unavailable == "fail":
                    refused = True
                    return start_response(_REFUSAL_STATUS, list(UNAVAILABLE_HEADERS), exc_info)
                cookie = None
            if cookie is not None:
                headers = [*headers, ("Set-Cookie", cookie)]
            return start_response(status, headers, exc_info)

        response = self.app(environ, start_with_session)
        if not refused:
            return response
        close = getattr(response, "close", None)
        if close is not None:
            close()
        return [UNAVAILABLE_BODY]

    def _open(self, session_id: str | None) -> Session | None:
        stored, unavailable = None, False
        if session_id is not None:
            try:
                stored = self.store.load_sync(storage_key(session_id), self.config.max_age)
            except StoreUnavailable:
                unavailable = True
        return self.config.open(session_id, stored, unavailable=unavailable)

    def _save(self, session: Session) -> str | None:
        plan = self.config.plan_save(session)
        written = self.store.apply_sync(plan, self.config.max_age)
        return self.config.cookie_after(plan, written)


def init_flask(app: Any, *, store: SessionStore, **options: Any) -> None:
    """Make ``flask.session`` a zerodown session: ``init_flask(app, store=RedisStore(url))``.

    Wraps ``app.wsgi_app`` in :class:`WSGISessionMiddleware` and installs a session
    interface that hands Flask the middleware's session.
    """
    from flask.sessions import SessionInterface

    class EnvironSessions(SessionInterface):
        def open_session(self, app: Any, request: Any) -> Any:
            # A Session is a MutableMapping, as Flask's SessionMixin is.
            return request.environ.get(ENVIRON_KEY)

        def save_session(self, app: Any, session: Any, response: Any) -> None:
            """The middleware saves when the response starts."""

    app.wsgi_app = WSGISessionMiddleware(app.wsgi_app, store=store, **options)
    app.session_interface = EnvironSessions()
