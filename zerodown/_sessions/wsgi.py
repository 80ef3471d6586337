"""The WSGI session middleware (``environ["zerodown.session"]``) and Flask's session
interface on top of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._errors import StoreUnavailable
from .contract import SessionStore
from .policy import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, SessionConfig
from .session import LazySession, Session, storage_key
from .stores import store_or_memory

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Where the WSGI middleware puts the request's session.
ENVIRON_KEY = "zerodown.session"
_REFUSAL_STATUS = "503 Service Unavailable"


class WSGISessionMiddleware:
    """Server-side sessions for a WSGI app, in ``environ["zerodown.session"]``.

    The session is read from the store when the app first uses it (a request that never
    does costs no store call) and written when the app calls ``start_response``. Under
    ``on_unavailable="fail"`` a store that does not answer raises :class:`StoreUnavailable`
    at that first use; if the app lets it through, this answers 503. Options and rules as
    for :class:`SessionMiddleware`.
    """

    def __init__(
        self, app: WSGIApplication, *, store: SessionStore | None = None, **options: Any
    ) -> None:
        self.app = app
        self.store = store_or_memory(store)
        self.config = SessionConfig(**options)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session_id = self.config.cookie_id(environ.get("HTTP_COOKIE", ""))
        lazy = LazySession(load=lambda: self._open(session_id))
        environ[ENVIRON_KEY] = lazy
        started = False

        def start_with_session(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            nonlocal started
            started = True
            cookie = None
            if lazy.loaded is not None:
                try:
                    cookie = self._save(lazy.loaded)
                except StoreUnavailable:
                    if self.config.on_unavailable == "fail":
                        return start_response(_REFUSAL_STATUS, list(UNAVAILABLE_HEADERS), exc_info)
            if cookie is not None:
                headers = [*headers, ("Set-Cookie", cookie)]
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start_with_session)
        except StoreUnavailable:
            if started:
                raise
            start_response(_REFUSAL_STATUS, list(UNAVAILABLE_HEADERS))
            return [UNAVAILABLE_BODY]

    def _open(self, session_id: str | None) -> Session:
        stored, unavailable = None, False
        if session_id is not None:
            try:
                stored = self.store.load_sync(storage_key(session_id), self.config.max_age)
            except StoreUnavailable:
                unavailable = True
        return self.config.open(session_id, stored, unavailable=unavailable)

    def _save(self, session: Session) -> str | None:
        plan = self.config.plan_save(session)
        outcome = self.store.apply_sync(plan, self.config.max_age)
        return self.config.cookie_after(plan, outcome)


def init_flask(app: Any, *, store: SessionStore | None = None, **options: Any) -> None:
    """Make ``flask.session`` a zerodown session: ``init_flask(app, store=RedisStore(url))``.

    Wraps ``app.wsgi_app`` in :class:`WSGISessionMiddleware`, installs a session interface
    that hands Flask the middleware's session, and answers :class:`StoreUnavailable` with
    503 and ``Retry-After``.
    """
    from flask.sessions import SessionInterface

    class EnvironSessions(SessionInterface):
        def open_session(self, app: Any, request: Any) -> Any:
            # A Session is a MutableMapping, as Flask's SessionMixin is.
            return request.environ.get(ENVIRON_KEY)

        def save_session(self, app: Any, session: Any, response: Any) -> None:
            """The middleware saves when the response starts."""

    def unavailable(error: StoreUnavailable) -> Any:
        return app.response_class(UNAVAILABLE_BODY, 503, UNAVAILABLE_HEADERS)

    app.wsgi_app = WSGISessionMiddleware(app.wsgi_app, store=store, **options)
    app.session_interface = EnvironSessions()
    # Flask turns exceptions from views into 500s before the middleware could answer.
    app.register_error_handler(StoreUnavailable, unavailable)
