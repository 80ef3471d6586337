"""The WSGI session middleware (``environ["zerodown.session"]``) and Flask's session
interface on top of it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._errors import StoreError, StoreUnavailable
from .contract import SessionStore
from .policy import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, SessionConfig, session_headers
from .rehearsal import RehearsalEndpoint
from .session import ENVIRON_KEY, LazySession, Session, storage_key
from .stores import store_or_memory

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

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
        self.rehearsal = RehearsalEndpoint()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        verified = self.config.read_cookie(environ.get("HTTP_COOKIE", ""))
        lazy = LazySession(load=lambda: self._open(verified))
        environ[ENVIRON_KEY] = lazy
        response = _ResponseState()

        def start_with_session(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            response.started = True
            if lazy.loaded is None:
                return start_response(status, headers, exc_info)
            plan = self.config.plan_save(lazy.loaded)
            try:
                outcome = self.store.apply_sync(plan, self.config.max_age)
            except StoreError:
                refuse, refusal_cookie = self.config.refusal(lazy.loaded)
                if refuse:
                    response.refused = True
                    refusal = _refusal_headers(refusal_cookie)
                    return start_response(_REFUSAL_STATUS, refusal, exc_info)
                cookie = None
            else:
                cookie = self.config.cookie_after(plan, outcome)
            raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
            with_session = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in session_headers(raw, cookie, read=True)
            ]
            return start_response(status, with_session, exc_info)

        app = self.app
        if self.rehearsal.matches(
            environ.get("PATH_INFO", ""), environ.get("HTTP_X_ZERODOWN_REHEARSAL")
        ):
            app = self.rehearsal.wsgi
        try:
            body = app(environ, start_with_session)
        except StoreUnavailable:
            if response.started:
                raise
            start_response(_REFUSAL_STATUS, _refusal_headers(None))
            return [UNAVAILABLE_BODY]
        if response.refused:
            _close(body)
            return [UNAVAILABLE_BODY]
        if response.started:
            return body
        # start_response comes with the first chunk: only then is a refusal known.
        return _RefusableBody(body, response)

    def _open(self, verified: tuple[str, bool] | None) -> Session:
        stored, unavailable = None, False
        if verified is not None:
            try:
                stored = self.store.load_sync(storage_key(verified[0]), self.config.max_age)
            except StoreError:
                unavailable = True
        return self.config.open_verified(verified, stored, unavailable=unavailable)


class _ResponseState:
    __slots__ = ("refused", "started")

    def __init__(self) -> None:
        self.started = False
        #: The save failed at start_response and the response became a 503: its body is
        #: the 503's, whatever the app goes on to produce.
        self.refused = False


class _RefusableBody:
    """The app's body, or the 503's once a save refused the response at its first chunk."""

    def __init__(self, body: Iterable[bytes], response: _ResponseState) -> None:
        self._body = body
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            if self._response.refused:
                yield UNAVAILABLE_BODY
                return
            yield chunk

    def close(self) -> None:
        _close(self._body)


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _refusal_headers(cookie: str | None) -> list[tuple[str, str]]:
    headers = list(UNAVAILABLE_HEADERS)
    if cookie is not None:
        headers.append(("Set-Cookie", cookie))
    return headers


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
