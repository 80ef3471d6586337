"""What the ASGI and WSGI session middleware share: the cookie, opening a session, and the
one store call that saves it. The middleware only do the I/O, async or not."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Sequence
from typing import Literal

from .._errors import ConfigurationError, StoreUnavailable, UnreadableRecord
from .._ratelimit import RateLimitedLog
from .._records.codec import Registry
from .._telemetry import telemetry
from .contract import Delete, Move, NoWrite, Save, SaveOutcome, SavePlan, size_of
from .session import (
    COOKIE_SENT,
    CREATED,
    DEFAULT_MAX_SESSION_SIZE,
    Session,
    Signer,
    new_session_id,
    storage_key,
)

logger = logging.getLogger("zerodown")

OutagePolicy = Literal["fail", "anonymous"]
#: Seconds a session lives unused (the cookie's Max-Age and the store's idle expiry).
DEFAULT_MAX_AGE = 14 * 24 * 3600
#: Seconds a session lives at most, however often it is used (OWASP's absolute timeout).
DEFAULT_ABSOLUTE_LIFETIME = 30 * 24 * 3600
#: Browsers send one Cookie header joined with "; "; a server that joins repeated headers
#: (gunicorn) adds ", ". A cookie value never holds either (RFC 6265, cookie-octet).
_COOKIE_SEPARATORS = re.compile(r"[;,]")
_SHARED_CACHING = re.compile(r"^\s*(public|s-maxage\s*=.*)\s*$", re.IGNORECASE)
_unreadable_log = RateLimitedLog(logger)
UNAVAILABLE_BODY = json.dumps(
    {"error": "sessions are unavailable for a moment; try again shortly"}
).encode()
UNAVAILABLE_HEADERS = [
    ("content-type", "application/json"),
    ("content-length", str(len(UNAVAILABLE_BODY))),
    ("retry-after", "1"),
    ("cache-control", "no-store"),
]


def secrets_from_environment() -> list[str]:
    raw = os.environ.get("ZERODOWN_SESSION_SECRETS", "")
    return [secret.strip() for secret in raw.split(",") if secret.strip()]


class SessionConfig:
    """The cookie, the signing secrets, and the rules of opening and saving a session."""

    def __init__(
        self,
        *,
        secrets: Sequence[str] | None = None,
        records: Registry | None = None,
        cookie_name: str = "session",
        max_age: int = DEFAULT_MAX_AGE,
        absolute_lifetime: int = DEFAULT_ABSOLUTE_LIFETIME,
        domain: str | None = None,
        path: str = "/",
        secure: bool = True,
        same_site: Literal["lax", "strict", "none"] = "lax",
        on_unavailable: OutagePolicy = "fail",
        max_size: int = DEFAULT_MAX_SESSION_SIZE,
    ) -> None:
        self.signer = Signer(secrets if secrets is not None else secrets_from_environment())
        self.records = records
        self.cookie_name = cookie_name
        for name, value in (("max_age", max_age), ("absolute_lifetime", absolute_lifetime)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be whole seconds >= 1, got {value!r}")
        self.max_age = max_age
        self.absolute_lifetime = absolute_lifetime
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

    # -- reading ---------------------------------------------------------------------------

    def cookie_id(self, cookie_header: str) -> str | None:
        """The verified id in a Cookie header; None if absent or forged."""
        verified = self.read_cookie(cookie_header)
        return None if verified is None else verified[0]

    def read_cookie(self, cookie_header: str) -> tuple[str, bool] | None:
        """The verified id in a Cookie header and whether an older secret signed it.

        Every value of the session cookie is tried, as a browser may send several (one per
        path or domain) and a server may join repeated headers: the first that verifies
        wins, so a forged one placed first cannot hide the real one.
        """
        prefix = f"{self.cookie_name}="
        for part in _COOKIE_SEPARATORS.split(cookie_header):
            part = part.strip()
            if part.startswith(prefix):
                verified = self.signer.verify_key(part[len(prefix) :])
                if verified is not None:
                    return verified[0], not verified[1]
        return None

    def open(
        self,
        session_id: str | None,
        stored: dict[str, bytes] | None,
        *,
        unavailable: bool,
        signed_with_old_secret: bool = False,
    ) -> Session:
        """The request's session, given what the store returned.

        Raises :class:`StoreUnavailable` when the outage policy refuses the request.
        """
        if unavailable:
            return self._anonymous(session_id)
        if session_id is None or stored is None:
            # An id the store does not hold is never adopted: a new one is issued on write.
            return self._fresh(None)
        if size_of(stored) > self.max_size:
            # Only a release with a larger max_size could have stored it: never lock the
            # user out of it. A new session gets a new id; the stored one is left alone.
            _unreadable_log.log(
                logging.WARNING,
                "oversized",
                "zerodown: a stored session is larger than max_size=%d; the request gets a "
                "new session",
                self.max_size,
            )
            return self._fresh(session_id)
        try:
            session = Session(
                session_id,
                stored,
                records=self.records,
                max_size=self.max_size,
                signed_with_old_secret=signed_with_old_secret,
            )
        except UnreadableRecord as error:
            telemetry.unreadable_session(error.type_name)
            if error.another_release:
                _unreadable_log.log(
                    logging.WARNING,
                    "another release",
                    "zerodown: a session holds a value this release cannot read (%s); the "
                    "stored session is left untouched and the request gets on_unavailable=%r",
                    error,
                    self.on_unavailable,
                )
                return self._anonymous(session_id)
            _unreadable_log.log(
                logging.WARNING,
                "unreadable",
                "zerodown: a session holds a value no release can read (%s); the stored "
                "session is left untouched and the request gets a new session",
                error,
            )
            return self._fresh(session_id)
        created = session.stamp(CREATED)
        if created is not None and time.time() - created > self.absolute_lifetime:
            return self._fresh(session_id)
        return session

    def open_verified(
        self,
        verified: tuple[str, bool] | None,
        stored: dict[str, bytes] | None,
        *,
        unavailable: bool,
    ) -> Session:
        """:meth:`open` for what :meth:`read_cookie` returned: the id and whether an older
        secret signed it, or None."""
        if verified is None:
            return self.open(None, None, unavailable=False)
        session_id, signed_with_old_secret = verified
        return self.open(
            session_id,
            stored,
            unavailable=unavailable,
            signed_with_old_secret=signed_with_old_secret,
        )

    def _fresh(self, claimed_id: str | None) -> Session:
        return Session(
            None, {}, records=self.records, max_size=self.max_size, claimed_id=claimed_id
        )

    def _anonymous(self, claimed_id: str | None) -> Session:
        if self.on_unavailable == "fail":
            raise StoreUnavailable("the session could not be read; on_unavailable='fail'")
        return Session(
            None,
            {},
            records=self.records,
            max_size=self.max_size,
            writable=False,
            claimed_id=claimed_id,
        )

    # -- saving ----------------------------------------------------------------------------

    def plan_save(
        self, session: Session, now: float | None = None, *, sends_cookie: bool = True
    ) -> SavePlan:
        """What saving ``session`` takes. Issues the new id of a new or regenerated one.

        The cookie goes out only when it is new, when its id or signing secret changed, or
        when less than half of its lifetime is left: a response that carries no Set-Cookie
        can be cached, and a shared cache must never hold a session cookie. A response that
        cannot carry one (a websocket's) refreshes nothing.
        """
        now = time.time() if now is None else now
        if session.invalidated:
            return self._plan_logout(session, now)
        if not session.writable:
            if session.dirty:
                logger.info("zerodown: a session change was dropped: the store was unavailable")
            return NoWrite()
        if session.regenerated_from is not None:
            session.id = new_session_id()
            session.set_stamp(CREATED, now)
            session.set_stamp(COOKIE_SENT, now)
            old, new = storage_key(session.regenerated_from), storage_key(session.id)
            moved = self._signed(session.id, session, now)
            return Move(old, new, session.fields, moved, self.max_size)
        if session.id is None:
            if not session.changed:
                return NoWrite()  # nothing to keep: no record, no cookie
            return self._plan_new(session, now)
        refresh = sends_cookie and (
            session.signed_with_old_secret or self._cookie_due(session, now)
        )
        if refresh:
            session.set_stamp(COOKIE_SENT, now)
        if session.stamp(CREATED) is None:  # stored by a release before absolute lifetimes
            session.set_stamp(CREATED, now)
        cookie = self._signed(session.id, session, now) if refresh else None
        if not (session.changed or session.removed):
            return NoWrite(cookie)
        key, removed = storage_key(session.id), frozenset(session.removed)
        return Save(key, session.changed, cookie, self.max_size, removed)

    def _plan_new(self, session: Session, now: float) -> Save:
        session.id = new_session_id()
        session.set_stamp(CREATED, now)
        session.set_stamp(COOKIE_SENT, now)
        cookie = self._signed(session.id, session, now)
        return Save(storage_key(session.id), session.changed, cookie, self.max_size, new=True)

    def _plan_logout(self, session: Session, now: float) -> SavePlan:
        """Delete every id the request held, and the cookie: also when the session could not
        be read, so that a logout during an outage is refused, never silently lost."""
        ids = [i for i in (session.id, session.regenerated_from, session.claimed_id) if i]
        keys = tuple(dict.fromkeys(storage_key(i) for i in ids))
        if session.changed and session.writable:  # set after the logout: a new session
            if not keys:
                return self._plan_new(session, now)
            session.id = new_session_id()
            session.set_stamp(CREATED, now)
            session.set_stamp(COOKIE_SENT, now)
            cookie = self._signed(session.id, session, now)
            return Move(keys[0], storage_key(session.id), session.fields, cookie, self.max_size)
        if not keys:
            return NoWrite()
        return Delete(keys, self._cookie("", max_age=0))

    def _cookie_due(self, session: Session, now: float) -> bool:
        sent = session.stamp(COOKIE_SENT)
        return sent is None or now - sent > self.max_age / 2

    def _signed(self, session_id: str, session: Session, now: float) -> str:
        # Never promise the browser more than the absolute lifetime leaves.
        created = session.stamp(CREATED)
        left = self.max_age if created is None else created + self.absolute_lifetime - now
        return self._cookie(
            self.signer.sign(session_id), max_age=max(1, min(self.max_age, int(left)))
        )

    def _cookie(self, value: str, *, max_age: int) -> str:
        return f"{self.cookie_name}={value}; Max-Age={max_age}; {self._attributes}"

    def cookie_after(self, plan: SavePlan, outcome: SaveOutcome) -> str | None:
        """The Set-Cookie value to send once the store carried ``plan`` out."""
        if outcome is SaveOutcome.GONE:
            logger.info(
                "zerodown: a session was deleted (logout or expiry) while a request changed "
                "it; the change was dropped"
            )
            return None
        if outcome is SaveOutcome.TOO_LARGE:
            # The stored session is as it was, and still the user's.
            logger.warning(
                "zerodown: a session change was dropped: it would have made the session larger "
                "than max_size=%d; store large data elsewhere and keep a reference in the "
                "session",
                self.max_size,
            )
            return None if isinstance(plan, Move) else plan.cookie
        return plan.cookie

    def refusal(self, session: Session) -> tuple[bool, str | None]:
        """Whether a save of ``session`` that the store could not carry out fails the
        request (503), and the Set-Cookie that 503 still sends.

        A logout always fails it, and deletes the cookie all the same, so that the browser
        forgets the session whatever the store did: a logout is never reported done when
        it was not.
        """
        if session.invalidated:
            return True, self._cookie("", max_age=0)
        return self.on_unavailable == "fail", None


def session_headers(
    headers: Iterable[tuple[bytes, bytes]], cookie: str | None, *, read: bool
) -> list[tuple[bytes, bytes]]:
    """A response's headers (as ASGI has them) with the session's: ``Vary: Cookie`` when the
    session was read, the Set-Cookie, and no shared caching of a response that carries one."""
    out: list[tuple[bytes, bytes]] = []
    varies = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"vary" and read:
            tokens = [token.strip().lower() for token in value.split(b",")]
            varies = varies or b"cookie" in tokens or b"*" in tokens
        elif lowered == b"cache-control" and cookie is not None:
            value = _private(value.decode("latin-1")).encode("latin-1")
        out.append((name, value))
    if read and not varies:
        out.append((b"vary", b"Cookie"))
    if cookie is not None:
        out.append((b"set-cookie", cookie.encode("latin-1")))
    return out


def _private(cache_control: str) -> str:
    """``cache_control`` with shared caching (``public``, ``s-maxage``) turned ``private``."""
    directives = [d for d in cache_control.split(",") if d.strip()]
    kept = [d.strip() for d in directives if not _SHARED_CACHING.match(d)]
    if len(kept) == len(directives):
        return cache_control
    if not any(d.lower() == "private" for d in kept):
        kept.insert(0, "private")
    return ", ".join(kept)
