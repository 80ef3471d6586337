"""The session engine a project used before zerodown's, for the one release that switches.

That release reads the previous engine's sessions and writes every session there too, so
that the previous release, still serving during the rolling deploy, keeps seeing its
users' logins, changes and logouts. Only engines whose stored form is JSON are read:
a pickled session is never unpickled in the request path (see the management command
``zerodown_import_sessions`` for those).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.serializers import JSONSerializer
from django.utils.module_loading import import_string

from .._errors import ConfigurationError

_DB = "django.contrib.sessions.backends.db"
_CACHED_DB = "django.contrib.sessions.backends.cached_db"
_FILE = "django.contrib.sessions.backends.file"
#: Where each engine's sessions are read from: cached_db's database, never its cache,
#: whose values Django's cache backends pickle.
_READ_THROUGH = {_DB: _DB, _CACHED_DB: _DB, _FILE: _FILE}
_PICKLED = (
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.signed_cookies",
)


class PreviousEngine:
    """Reads, writes and deletes sessions of ``engine`` through its own SessionStore."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        writer = _store_class(engine)
        read_through = _READ_THROUGH.get(engine)
        if read_through is None:
            db_store = _store_class(_DB)
            cached_db_store = _store_class(_CACHED_DB)
            if not issubclass(writer, db_store) or issubclass(writer, cached_db_store):
                why = "its values are pickled" if engine in _PICKLED else "not a db or file engine"
                raise ConfigurationError(
                    f'settings.ZERODOWN["sessions"]["previous_engine"] is {engine!r}, whose '
                    f"sessions zerodown cannot read without unpickling them ({why}). Leave "
                    "previous_engine out and copy the sessions once with manage.py "
                    "zerodown_import_sessions (see docs/django.md)"
                )
            self._reader: Any = writer
        else:
            self._reader = _store_class(read_through)
        self._writer: Any = writer
        serializer = import_string(settings.SESSION_SERIALIZER)
        if not (isinstance(serializer, type) and issubclass(serializer, JSONSerializer)):
            raise ConfigurationError(
                f"SESSION_SERIALIZER is {settings.SESSION_SERIALIZER}, not Django's "
                "JSONSerializer: zerodown does not decode another serializer's sessions in "
                "the request path, as it could run code (pickle). Copy them once with "
                "manage.py zerodown_import_sessions"
            )

    def read(self, key: str) -> dict[str, Any] | None:
        """The session at ``key``, or None when the previous engine does not hold it (its
        engines forget the key of a session they do not find)."""
        store = self._reader(key)
        data: dict[str, Any] = store.load()
        return None if store.session_key is None else data

    def create(self, key: str, data: dict[str, Any]) -> None:
        self._save(key, data, must_create=True)

    def update(self, key: str, data: dict[str, Any]) -> None:
        """Replace the session at ``key`` with ``data``; Django's ``UpdateError`` when the
        previous engine holds none (deleted meanwhile: a logout)."""
        self._save(key, data, must_create=False)

    def _save(self, key: str, data: dict[str, Any], *, must_create: bool) -> None:
        store = self._writer(key)
        store.clear()  # the data replaces what is there: nothing to read first
        store.update(data)
        store.save(must_create=must_create)

    def delete(self, key: str) -> None:
        self._writer(key).delete()


def _store_class(engine: str) -> Any:
    try:
        return import_module(engine).SessionStore
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(
            f"the previous session engine {engine!r} cannot be imported ({error}); give the "
            "SESSION_ENGINE the previous release has"
        ) from None
