"""The session store contract: what a save asks of a store, and what a store answers.

Third-party stores implement :class:`SessionStore`. The middleware plan every save with
:meth:`SessionConfig.plan_save`, which returns one of the four plans below; the store
carries it out atomically and answers with a :class:`SaveOutcome`. A store that cannot
answer (down, stalled) raises :class:`StoreUnavailable`, and nothing may have been written.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NoWrite:
    """Nothing to store. ``cookie`` is the Set-Cookie value to send anyway, if any."""

    cookie: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the sessions at ``keys`` (a logout): the current one and the one it moved
    from, if any."""

    keys: tuple[str, ...]
    cookie: str


@dataclass(frozen=True, slots=True)
class Move:
    """Store ``fields`` under ``new_key`` and delete ``old_key`` (a login regenerates the
    id), new before old."""

    old_key: str
    new_key: str
    fields: Mapping[str, bytes]
    cookie: str
    max_size: int


@dataclass(frozen=True, slots=True)
class Save:
    """Write the ``changed`` fields and delete the ``removed`` ones of the session at
    ``key``, only if it still exists or is ``new``, and only if the session stays within
    ``max_size`` bytes (field names and values) once written."""

    key: str
    changed: Mapping[str, bytes]
    cookie: str | None
    max_size: int
    removed: frozenset[str] = field(default_factory=frozenset)
    new: bool = False


SavePlan = NoWrite | Delete | Move | Save


class SaveOutcome(enum.Enum):
    WRITTEN = "written"
    #: The session was deleted meanwhile (a logout on another request): nothing written.
    GONE = "gone"
    #: The write would have made the session larger than ``max_size``: nothing written.
    TOO_LARGE = "too large"


class SessionStore(Protocol):
    """Where sessions live: one record of fields per storage key, with an expiry.

    Async methods for ASGI apps, ``_sync`` ones for WSGI apps. Every call is bounded in
    time; a store that does not answer raises :class:`zerodown.sessions.StoreUnavailable`.
    """

    async def load(self, key: str, ttl: int) -> dict[str, bytes] | None:
        """The fields of the session at ``key``, or None. Its expiry becomes ``ttl`` s from
        now, or stays as it is when ``ttl`` is 0."""

    def load_sync(self, key: str, ttl: int) -> dict[str, bytes] | None: ...

    async def apply(self, plan: SavePlan, ttl: int) -> SaveOutcome:
        """Carry out ``plan`` atomically, the stored session expiring ``ttl`` s from now."""

    def apply_sync(self, plan: SavePlan, ttl: int) -> SaveOutcome: ...


def size_of(fields: Mapping[str, bytes]) -> int:
    """A session's size as ``max_size`` counts it: its field names and values."""
    return sum(len(name.encode()) + len(value) for name, value in fields.items())
