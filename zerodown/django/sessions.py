"""zerodown's sessions as a Django session engine, and the middleware that goes with it.

::

    SESSION_ENGINE = "zerodown.django.sessions"
    MIDDLEWARE = [..., "zerodown.django.sessions.SessionMiddleware", ...]  # Django's place
    ZERODOWN = {"sessions": {"store": "redis://127.0.0.1:6379/0"}}

Sessions live in zerodown's store (:class:`zerodown.sessions.RedisStore`), one Redis hash
per session and a field per key, each value written with zerodown's codec (JSON data or
:class:`zerodown.codec.Record`, never pickle). A save writes only the keys whose stored
value changed, into a session that must still exist: two concurrent requests of one user
keep each other's changes, and a write slower than a logout raises Django's
``UpdateError`` (``SessionInterrupted``, 400) instead of bringing the session back. Keys
are signed and stored hashed (see ``_keys``). Django's expiry rules (``set_expiry``,
``SESSION_COOKIE_AGE``) become the record's expiry, so ``clear_expired`` has nothing to do.

``settings.ZERODOWN["sessions"]``:

- ``store``: a ``redis://`` URL or a store object (:class:`~zerodown.sessions.RedisStore`,
  :class:`~zerodown.sessions.MemoryStore` for tests). Required.
- ``secrets``: the signing secrets, the first signs (default ``ZERODOWN_SESSION_SECRETS``,
  else derived from ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``, so that Django's own key
  rotation rotates them).
- ``on_unavailable``: ``"fail"`` (a store that does not answer gets 503 and
  ``Retry-After``) or ``"anonymous"`` (the request goes on without its session, which is
  left as stored). A logout the store did not carry out is always refused.
- ``max_size``: bytes of a session at most (64 KiB); a larger save is dropped and logged.
- ``records``: a :class:`zerodown.codec.Registry`, or ``"module:attribute"`` naming one.
- ``previous_engine``: for the one release that switches engines, the ``SESSION_ENGINE``
  the previous release has (db, cached_db or file). That release reads its sessions and
  writes every session to it as well, so that nobody is logged out while both releases
  serve; the next release drops the setting.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from .._errors import ConfigurationError, StoreError, StoreUnavailable, UnreadableRecord
from .._records.codec import Registry
from .._sessions.contract import Delete, Save, SaveOutcome
from .._sessions.contract import SessionStore as Store
from .._sessions.policy import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, secrets_from_environment
from .._sessions.rehearsal import HEADER, RehearsalEndpoint
from .._sessions.session import (
    CREATED,
    DEFAULT_MAX_SESSION_SIZE,
    RESERVED_PREFIX,
    decode_value,
    encode_value,
    storage_key,
)
from .._sessions.stores import RedisStore
from ._keys import KeySigner, is_django_key
from ._previous import PreviousEngine
from .conf import section

__all__ = ["SessionMiddleware", "SessionStore"]

logger = logging.getLogger("zerodown")

#: Set by the release that also writes the previous engine: that engine, which the
#: previous release may have changed or emptied since, says what the session is.
MIRRORED = RESERVED_PREFIX + "mirrored"
_SETTINGS = frozenset(
    {"store", "secrets", "on_unavailable", "max_size", "records", "previous_engine"}
)
#: A store's load with this expiry leaves the record's own: Django sets it when it saves.
_KEEP_EXPIRY = 0


class _Engine:
    """What ``settings.ZERODOWN["sessions"]`` configures, made once per process."""

    def __init__(self, given: Mapping[str, Any]) -> None:
        unknown = sorted(set(given) - _SETTINGS)
        if unknown:
            raise ConfigurationError(
                f'settings.ZERODOWN["sessions"] has {", ".join(map(repr, unknown))}, which '
                f"zerodown does not know; it knows {', '.join(sorted(_SETTINGS))}"
            )
        store = given.get("store")
        if store is None:
            raise ConfigurationError(
                "SESSION_ENGINE is zerodown.django.sessions, which needs a store: ZERODOWN = "
                '{"sessions": {"store": "redis://HOST:6379/0"}}'
            )
        self.store: Store = RedisStore(store) if isinstance(store, str) else store
        self.signer = KeySigner(given.get("secrets") or secrets_from_environment() or _derived())
        self.on_unavailable = given.get("on_unavailable", "fail")
        if self.on_unavailable not in ("fail", "anonymous"):
            raise ConfigurationError(
                'settings.ZERODOWN["sessions"]["on_unavailable"] must be "fail" or '
                f'"anonymous", got {self.on_unavailable!r}'
            )
        self.max_size = given.get("max_size", DEFAULT_MAX_SESSION_SIZE)
        records = given.get("records")
        self.records: Registry | None = (
            import_string(records.replace(":", ".")) if isinstance(records, str) else records
        )
        previous = given.get("previous_engine")
        self.previous = None if previous is None else PreviousEngine(previous)

    def fields(self, data: Mapping[str, Any]) -> dict[str, bytes]:
        """A session's data as the store's fields (:class:`TypeError` for a value that is
        neither JSON data nor a record)."""
        return {key: encode_value(value, self.records) for key, value in data.items()}

    def creation(self, session_key: str, fields: Mapping[str, bytes]) -> Save:
        """The save that creates the session at ``session_key`` with ``fields``."""
        created = {**fields, CREATED: encode_value(round(time.time(), 3), None)}
        return Save(storage_key(session_key), created, None, self.max_size, new=True)


def _derived() -> list[str]:
    """Secrets derived from Django's own, for this purpose only."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    return [
        salted_hmac("zerodown.django.sessions", "key", secret=key, algorithm="sha256").hexdigest()
        for key in keys
        if key
    ]


@functools.cache
def engine() -> _Engine:
    return _Engine(section("sessions"))


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("ZERODOWN", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "SESSION_SERIALIZER"):
        engine.cache_clear()


setting_changed.connect(_settings_changed)


class SessionStore(SessionBase):  # type: ignore[misc]  # Django ships no types
    """Django's session API on zerodown's store: only changed keys are written.

    The async methods are Django's own (``aload`` runs ``load`` in a thread, and so on),
    as for Django's database engine: a sync Redis client serves every event loop, where
    an asyncio one would be bound to the first (Django runs each async view of a WSGI
    app in a loop of its own).
    """

    _session_key: str | None  # Django's validating property (for the type checker)

    def __init__(self, session_key: str | None = None) -> None:
        self._engine = engine()
        #: The fields as the store holds them, as last read or written: a save writes
        #: what differs.
        self._stored: dict[str, bytes] = {}
        self._in_store = False
        self._in_previous = False
        #: False when the store could not be read (on_unavailable="anonymous"): the
        #: request goes on without the session, and nothing is written over it.
        self._readable = True
        #: A logout the store did not carry out: the middleware refuses the request.
        self.logout_refused = False
        super().__init__(session_key)

    # -- keys --------------------------------------------------------------------------

    def _validate_session_key(self, key: object) -> bool:
        # Keys of Django's own engines: the previous engine's, or copied by
        # zerodown_import_sessions; they cost a store lookup, as in Django's engines.
        return self._engine.signer.verifies(key) or is_django_key(key)

    def _get_new_session_key(self) -> str:
        return self._engine.signer.new_key()  # 124 random bits: no lookup for a collision

    # -- reading -----------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return self._opened(None)
        try:
            stored = self._engine.store.load_sync(storage_key(self.session_key), _KEEP_EXPIRY)
        except StoreError:
            return self._unreadable()
        previous = self._engine.previous
        if previous is not None and (stored is None or MIRRORED in stored):
            data = previous.read(self.session_key)
            if data is None:
                if stored is not None:  # the previous release's logout, not undone here
                    self._engine.store.apply_sync(self._deletion(self.session_key), _KEEP_EXPIRY)
                return self._opened(None)
            self._in_previous = True
            return self._opened(stored, data)
        return self._opened(stored)

    def _opened(
        self, stored: dict[str, bytes] | None, data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The session's data from the store's fields (or ``data`` from the previous
        engine, ``stored`` then being what zerodown's store holds of it)."""
        self._stored = stored or {}
        self._in_store = stored is not None
        if data is not None:
            return data
        if stored is None:
            self._session_key = None  # an unknown key is never adopted: a new one on write
            return {}
        try:
            return {
                key: decode_value(payload, self._engine.records)
                for key, payload in stored.items()
                if not key.startswith(RESERVED_PREFIX)
            }
        except UnreadableRecord as error:
            if error.another_release:
                logger.warning(
                    "zerodown: a session holds a value this release cannot read (%s); it is "
                    "left as stored and the request follows on_unavailable=%r",
                    error,
                    self._engine.on_unavailable,
                )
                return self._unreadable()
            logger.warning(
                "zerodown: a session holds a value no release can read (%s); it is left "
                "as stored and the request gets a new session",
                error,
            )
            self._stored, self._in_store = {}, False
            self._session_key = None
            return {}

    def _unreadable(self) -> dict[str, Any]:
        if self._engine.on_unavailable == "fail":
            raise StoreUnavailable("the session could not be read; on_unavailable='fail'")
        self._readable = False
        return {}

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        key = storage_key(session_key)
        if self._engine.store.load_sync(key, _KEEP_EXPIRY) is not None:
            return True
        previous = self._engine.previous
        return previous is not None and previous.read(session_key) is not None

    # -- writing -----------------------------------------------------------------------

    def create(self) -> None:
        self._session_key = self._get_new_session_key()
        self._stored, self._in_store, self._in_previous = {}, False, False
        self.save(must_create=True)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        plan = self._plan(self._get_session(no_load=must_create), must_create)
        if plan is None:
            return None
        previous = self._engine.previous
        if previous is not None:
            self._write_previous(previous, must_create)
        try:
            outcome = self._engine.store.apply_sync(plan, self.get_expiry_age())
        except StoreError:
            return self._not_saved()
        return self._saved(plan, outcome)

    def _plan(self, data: Mapping[str, Any], must_create: bool) -> Save | None:
        """The fields to write: every one for a session new to the store, else those whose
        stored value differs, and the keys deleted."""
        if not self._readable:
            logger.info("zerodown: a session change was dropped: the store was unavailable")
            return None
        fields = self._engine.fields(data)
        if self._engine.previous is not None:
            fields[MIRRORED] = encode_value(True, None)
        if must_create or not self._in_store:
            return self._engine.creation(self.session_key, fields)
        key, max_size = storage_key(self.session_key), self._engine.max_size
        changed = {name: value for name, value in fields.items() if self._stored.get(name) != value}
        removed = {name for name in self._stored if name not in fields}
        # zerodown's own fields stay (a Redis hash without fields does not exist), but
        # the mark of the switching release goes once a later release writes.
        removed = {name for name in removed if not name.startswith(RESERVED_PREFIX)}
        if self._engine.previous is None and MIRRORED in self._stored:
            removed.add(MIRRORED)
        return Save(key, changed, None, max_size, frozenset(removed))

    def _write_previous(self, previous: PreviousEngine, must_create: bool) -> None:
        data = dict(self._session)
        if must_create:
            previous.create(self.session_key, data)
        elif self._in_previous:
            try:
                previous.update(self.session_key, data)
            except UpdateError:
                # The previous release logged the user out meanwhile: so is this request.
                self._engine.store.apply_sync(self._deletion(self.session_key), _KEEP_EXPIRY)
                raise
        else:
            # A session a later release wrote in zerodown's store alone, which may be in
            # the previous engine from an earlier write of this release.
            try:
                previous.update(self.session_key, data)
            except UpdateError:
                previous.create(self.session_key, data)
        self._in_previous = True

    def _saved(self, plan: Save, outcome: SaveOutcome) -> None:
        if outcome is SaveOutcome.GONE:
            raise UpdateError  # a logout (or the expiry) came first: Django answers 400
        if outcome is SaveOutcome.TOO_LARGE:
            logger.warning(
                "zerodown: a session change was dropped: it would have made the session "
                "larger than max_size=%d; store large data elsewhere and keep a reference",
                self._engine.max_size,
            )
            return
        if plan.new:
            self._stored = dict(plan.changed)
        else:
            self._stored.update(plan.changed)
            for name in plan.removed:
                self._stored.pop(name, None)
        self._in_store = True

    def _not_saved(self) -> None:
        if self._engine.on_unavailable == "fail":
            raise StoreUnavailable("the session could not be saved; on_unavailable='fail'")
        logger.info("zerodown: a session change was dropped: the store was unavailable")

    def delete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        if key is None:
            return
        try:
            self._engine.store.apply_sync(self._deletion(key), _KEEP_EXPIRY)
        except StoreError:
            self.logout_refused = True
            raise
        previous = self._engine.previous
        if previous is not None:
            previous.delete(key)

    @staticmethod
    def _deletion(session_key: str) -> Delete:
        return Delete((storage_key(session_key),), cookie="")

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: each record expires in the store when Django says it does."""


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's ``SessionMiddleware`` with zerodown's answers: a store that does not answer
    gets 503 and ``Retry-After`` (a logout it could not carry out deletes the cookie all
    the same), and ``zerodown rehearse`` finds its session endpoint.

    Works with any ``SESSION_ENGINE``: the endpoint counts in whatever session Django has.
    """

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self.rehearsal = RehearsalEndpoint()

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        super().process_request(request)
        if not self.rehearsal.matches(request.path_info, request.headers.get(HEADER)):
            return None
        try:
            body = self.rehearsal.count(request.session)
        except StoreError:
            return self._unavailable(request)
        return HttpResponse(
            body, content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return self._unavailable(request) if isinstance(exception, StoreError) else None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            answered: HttpResponse = super().process_response(request, response)
        except StoreError:
            return self._unavailable(request)
        return answered

    @staticmethod
    def _unavailable(request: HttpRequest) -> HttpResponse:
        response = HttpResponse(UNAVAILABLE_BODY, status=503, headers=dict(UNAVAILABLE_HEADERS))
        if getattr(getattr(request, "session", None), "logout_refused", False):
            response.delete_cookie(
                settings.SESSION_COOKIE_NAME,
                path=settings.SESSION_COOKIE_PATH,
                domain=settings.SESSION_COOKIE_DOMAIN,
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
        return response
