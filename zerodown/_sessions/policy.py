"""What the ASGI and WSGI session middleware share: the cookie, opening a session, and the
one store call that saves it. The middleware only do the I/O, async or not."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Literal

from .._errors import ConfigurationError, StoreUnavailable, UnreadableRecord
from .._records.codec import Registry
from .._telemetry import telemetry
from .contract import Delete, Move, NoWrite, Save, SaveOutcome, SavePlan
from .session import DEFAULT_MAX_SESSION_SIZE, Session, Signer, new_session_id, storage_key

logger = logging.getLogger("zerodown")

OutagePolicy = Literal["fail", "anonymous"]
DEFAULT_MAX_AGE = 14 * 24 * 3600
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
        if not isinstance(max_age, int) or max_age < 1:
            raise ConfigurationError(f"max_age must be whole seconds >= 1, got {max_age!r}")
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

    def cookie_id(self, cookie_header: str) -> str | None:
        """The verified id in a Cookie header; None if absent or forged.

        A cookie signed with an older secret is re-signed with the first: every response
        of an existing session carries its cookie (the expiry slides).
        """
        prefix = f"{self.cookie_name}="
        for part in cookie_header.split(";"):
            part = part.strip()
            if part.startswith(prefix):
                return self.signer.verify(part[len(prefix) :])
        return None

    def open(
        self, session_id: str | None, stored: dict[str, bytes] | None, *, unavailable: bool
    ) -> Session:
        """The request's session, given what the store returned.

        Raises :class:`StoreUnavailable` when the outage policy refuses the request.
        """
        if unavailable:
            return self._anonymous()
        if session_id is None or stored is None:
            # An id the store does not hold is never adopted: a new one is issued on write.
            return Session(None, {}, records=self.records, max_size=self.max_size)
        try:
            return Session(session_id, stored, records=self.records, max_size=self.max_size)
        except UnreadableRecord as error:
            telemetry.unreadable_session(error.type_name)
            logger.warning(
                "zerodown: a session holds a value this release cannot read (%s); the stored "
                "session is left untouched and the request gets on_unavailable=%r",
                error,
                self.on_unavailable,
            )
            return self._anonymous()

    def _anonymous(self) -> Session:
        if self.on_unavailable == "fail":
            raise StoreUnavailable("the session could not be read; on_unavailable='fail'")
        return Session(None, {}, records=self.records, max_size=self.max_size, writable=False)

    def plan_save(self, session: Session) -> SavePlan:
        """What saving ``session`` takes. Issues the new id of a new or regenerated one."""
        if not session.writable:
            if session.dirty:
                logger.info("zerodown: a session change was dropped: the store was unavailable")
            return NoWrite()
        if session.invalidated:
            ids = [i for i in (session.id, session.regenerated_from) if i is not None]
            if not ids:
                return NoWrite()
            keys = tuple(storage_key(i) for i in ids)
            return Delete(keys, self._cookie("", max_age=0))
        if session.regenerated_from is not None:
            session.id = new_session_id()
            old, new = storage_key(session.regenerated_from), storage_key(session.id)
            return Move(old, new, session.fields, self._signed(session.id), self.max_size)
        if session.id is None:
            if not session.changed:
                return NoWrite()  # nothing to keep: no record, no cookie
            session.id = new_session_id()
            key, cookie = storage_key(session.id), self._signed(session.id)
            return Save(key, session.changed, cookie, self.max_size, new=True)
        # The store's expiry slides on every read; the cookie's slides with it.
        cookie = self._signed(session.id)
        if not (session.changed or session.removed):
            return NoWrite(cookie)
        removed = frozenset(session.removed)
        return Save(storage_key(session.id), session.changed, cookie, self.max_size, removed)

    def _signed(self, session_id: str) -> str:
        return self._cookie(self.signer.sign(session_id))

    def _cookie(self, value: str, *, max_age: int | None = None) -> str:
        age = self.max_age if max_age is None else max_age
        return f"{self.cookie_name}={value}; Max-Age={age}; {self._attributes}"

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
        return plan.cookie
