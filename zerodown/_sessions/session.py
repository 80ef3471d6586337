"""A session: signed ids, per-key change tracking, and how values are stored.

The stored form is one hash per session, a field per key, so that a request writes only the
keys it changed and two requests of one user that change different keys both persist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import msgspec

from .._errors import ConfigurationError, SessionTooLarge, UnreadableRecord
from .._records.codec import Record, Registry
from .contract import size_of

#: Bytes of randomness in a session id (256 bits).
ID_BYTES = 32
#: Where the WSGI middleware puts the request's session.
ENVIRON_KEY = "zerodown.session"
#: The largest session, in bytes of field names and values.
DEFAULT_MAX_SESSION_SIZE = 64 * 1024
# A stored value's first byte says how the rest is encoded.
_PLAIN = b"j"  # msgspec JSON of plain data
_RECORD = b"r"  # a zerodown.codec record envelope

#: Field names of zerodown's own, beside the app's keys: a key cannot start with NUL.
RESERVED_PREFIX = "\x00"
#: ``time.time()`` when the session began: its absolute lifetime counts from there.
CREATED = "\x00created"
#: ``time.time()`` when its cookie was last sent: it is sent again past half its Max-Age.
COOKIE_SENT = "\x00cookie_sent"

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


# -- ids and cookies ---------------------------------------------------------------------


def signing_keys(keys: Sequence[str | bytes], example: str) -> list[bytes]:
    """``keys`` as bytes, checked: a non-empty list of secrets of 16 bytes or more;
    ``example`` shows where the user gives them."""
    if isinstance(keys, str | bytes) or not keys:
        raise ConfigurationError(
            f"session secrets must be a non-empty list, e.g. {example} (the first signs, all "
            "verify)"
        )
    checked = [key.encode() if isinstance(key, str) else bytes(key) for key in keys]
    if any(len(key) < 16 for key in checked):
        raise ConfigurationError(
            "each session secret must be at least 16 bytes; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return checked


class Signer:
    """Signs session ids with HMAC-SHA256: the first secret signs, every secret verifies.

    Rotating a key across a deploy: release 1 lists ``[old]``; release 2 lists
    ``[new, old]`` (cookies signed with ``old`` still verify, and are re-signed with
    ``new`` when seen); a later release drops ``old``.
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        self._keys = signing_keys(keys, "ZERODOWN_SESSION_SECRETS=new-secret,old-secret")

    def sign(self, session_id: str) -> str:
        return f"{session_id}.{self._signature(self._keys[0], session_id)}"

    def verify(self, cookie: str) -> str | None:
        """The id in a cookie value; None when it is forged or malformed."""
        verified = self.verify_key(cookie)
        return None if verified is None else verified[0]

    def verify_key(self, cookie: str) -> tuple[str, bool] | None:
        """The id in a cookie value and whether the first secret signed it; None when it
        is forged or malformed (any string at all: cookies are the client's)."""
        session_id, dot, signature = cookie.rpartition(".")
        if not dot or not _is_session_id(session_id) or not signature.isascii():
            return None
        given = signature.encode()
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(given, self._signature(key, session_id).encode()):
                return session_id, index == 0
        return None

    @staticmethod
    def _signature(key: bytes, session_id: str) -> str:
        digest = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_session_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def _is_session_id(value: str) -> bool:
    # token_urlsafe(32) gives 43 characters of the URL-safe base64 alphabet.
    return len(value) == 43 and value.isascii() and all(c.isalnum() or c in "-_" for c in value)


def storage_key(session_id: str) -> str:
    """Where a session is stored: a hash of its id, so a dump of the store holds no ids."""
    return hashlib.sha256(session_id.encode()).hexdigest()


# -- values ------------------------------------------------------------------------------


def encode_value(value: object, records: Registry | None) -> bytes:
    if isinstance(value, Record):
        if records is None:
            raise TypeError(
                f"{type(value).__name__} is a Record, but the session has no records registry; "
                "pass records=your_registry to the session middleware"
            )
        return _RECORD + records.encode(value)
    try:
        return _PLAIN + _json_encode(value)
    except (TypeError, msgspec.EncodeError) as error:
        raise TypeError(
            f"a session value must be JSON data (dict, list, str, int, float, bool, None) "
            f"or a zerodown.codec Record; {type(value).__name__} is neither: {error}"
        ) from None


def decode_value(stored: bytes, records: Registry | None) -> Any:
    kind, payload = stored[:1], stored[1:]
    if kind == _PLAIN:
        try:
            return _json_decode(payload)
        except (ValueError, RecursionError) as error:  # msgspec.DecodeError, too deep
            raise UnreadableRecord(f"malformed JSON: {error}", type_name="session value") from None
    if kind == _RECORD:
        if records is None:
            raise UnreadableRecord(
                "no records registry is configured", type_name="?", another_release=True
            )
        return records.decode_registered(payload)
    raise UnreadableRecord("not written by zerodown's sessions", type_name="session value")


# -- the session -------------------------------------------------------------------------


class Session(MutableMapping[str, Any]):
    """A user's session: a dict whose changed keys are written back, and nothing else.

    Assign to save: ``session["cart"] = cart``. A value changed in place (``session["cart"]
    .append(x)``) is not seen; call :meth:`mark_changed` for it. Values are JSON data or
    :class:`zerodown.codec.Record` instances (version-skew safe).

    ``claimed_id`` is the id of the request's cookie when it led to no usable session (the
    store was down, or held what this release cannot use): a logout still deletes it.
    """

    def __init__(
        self,
        session_id: str | None,
        stored: Mapping[str, bytes],
        *,
        records: Registry | None,
        max_size: int,
        writable: bool = True,
        claimed_id: str | None = None,
        signed_with_old_secret: bool = False,
    ) -> None:
        self.id = session_id
        self._records = records
        self._max_size = max_size
        self._stored = dict(stored)
        self._values: dict[str, Any] = {}
        self._changed: dict[str, bytes] = {}
        self._removed: set[str] = set()
        self.writable = writable
        self.claimed_id = claimed_id
        self.signed_with_old_secret = signed_with_old_secret
        self.regenerated_from: str | None = None
        self.invalidated = False
        # Decoded up front so that an unreadable value fails the load, not a later access.
        for key, payload in self._stored.items():
            if not key.startswith(RESERVED_PREFIX):
                self._values[key] = decode_value(payload, records)

    def stamp(self, name: str) -> float | None:
        """One of zerodown's own times (:data:`CREATED`, :data:`COOKIE_SENT`), if stored."""
        payload = self._changed.get(name, self._stored.get(name))
        if payload is None or payload[:1] != _PLAIN or len(payload) > 32:
            return None
        try:  # a JSON number, and nothing else: the field is the client's to tamper with
            value = float(payload[1:])
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def set_stamp(self, name: str, value: float) -> None:
        """Store one of zerodown's own times with the next save."""
        self._changed[name] = _PLAIN + _json_encode(round(value, 3))

    @property
    def changed(self) -> dict[str, bytes]:
        return self._changed

    @property
    def removed(self) -> set[str]:
        return self._removed

    @property
    def fields(self) -> dict[str, bytes]:
        """Every field as it is to be stored, after this request's changes (after a logout,
        only what was set since)."""
        if self.invalidated:
            return dict(self._changed)
        fields = {k: v for k, v in self._stored.items() if k not in self._removed}
        fields.update(self._changed)
        return fields

    @property
    def dirty(self) -> bool:
        return bool(self._changed or self._removed or self.regenerated_from or self.invalidated)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key or key.startswith(RESERVED_PREFIX):
            raise KeyError(f"session keys are non-empty strings, got {key!r}")
        encoded = encode_value(value, self._records)
        size = size_of({**self.fields, key: encoded})
        if size > self._max_size:
            raise SessionTooLarge(
                f"setting {key!r} would make the session {size} bytes, more than max_size="
                f"{self._max_size}; store large data elsewhere and keep a reference in the "
                "session"
            )
        self._values[key] = value
        self._changed[key] = encoded
        self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        self._changed.pop(key, None)
        if key in self._stored:
            self._removed.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def mark_changed(self, key: str) -> None:
        """Save ``key`` although it was not assigned (its value was changed in place)."""
        self[key] = self._values[key]

    @property
    def modified(self) -> bool:
        """Whether this request changes the session; setting True saves every key (Flask's
        idiom after changing values in place)."""
        return self.dirty

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            for key in list(self._values):
                self.mark_changed(key)

    def regenerate(self) -> None:
        """Move the data to a new id and delete the old record: call it at login."""
        if self.id is not None and self.regenerated_from is None:
            self.regenerated_from = self.id
        self.id = None

    def invalidate(self) -> None:
        """Delete the session and its cookie: call it at logout. Values set afterwards (a
        "you are logged out" message) go into a new session, under a new id."""
        self.invalidated = True
        self._values.clear()
        self._changed.clear()
        self._removed.clear()


class LazySession(MutableMapping[str, Any]):
    """A session read from the store when first used, so a request that never touches it
    costs no store call.

    WSGI apps read it on first access. ASGI apps (``SessionMiddleware(lazy=True)``) call
    ``await request.session.load()`` first: an event loop must not wait on Redis.
    """

    def __init__(
        self,
        *,
        load: Callable[[], Session] | None = None,
        load_async: Callable[[], Awaitable[Session]] | None = None,
    ) -> None:
        self._load = load
        self._load_async = load_async
        #: The session once read; None while nothing asked for it.
        self.loaded: Session | None = None

    async def load(self) -> Session:
        if self.loaded is None:
            if self._load_async is None:
                return self._session()
            self.loaded = await self._load_async()
        return self.loaded

    def _session(self) -> Session:
        if self.loaded is None:
            if self._load is None:
                raise RuntimeError(
                    "the session is not loaded: with SessionMiddleware(lazy=True), call "
                    "`await request.session.load()` before using request.session"
                )
            self.loaded = self._load()
        return self.loaded

    def __getitem__(self, key: str) -> Any:
        return self._session()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._session()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._session()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._session())

    def __len__(self) -> int:
        return len(self._session())

    @property
    def modified(self) -> bool:
        return self.loaded is not None and self.loaded.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        self._session().modified = value

    def mark_changed(self, key: str) -> None:
        self._session().mark_changed(key)

    def regenerate(self) -> None:
        self._session().regenerate()

    def invalidate(self) -> None:
        self._session().invalidate()
