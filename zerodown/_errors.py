"""Every error zerodown raises on purpose, in one hierarchy.

    ZerodownError
    ├── ConfigurationError        a setting or declaration is wrong (also a ValueError)
    ├── SessionError
    │   ├── StoreError            the session store refused a call (a script error, a key
    │   │   │                     of the wrong type); nothing was written
    │   │   └── StoreUnavailable  the session store did not answer in time: an outage
    │   └── SessionTooLarge       a value would make the session exceed max_size (ValueError)
    └── UnreadableRecord          this release cannot read a stored record safely

Catch :class:`ZerodownError` to handle them all. Each message says what happened and what
to do.
"""

from __future__ import annotations


class ZerodownError(Exception):
    """Base class of every error zerodown raises on purpose."""


class ConfigurationError(ZerodownError, ValueError):
    """A setting is malformed; the message names it and says what to set instead."""


class SessionError(ZerodownError):
    """Something kept a session from being read or written."""


class StoreError(SessionError):
    """The session store refused a call; nothing was written. Not an outage: retrying the
    same call fails the same way."""


class StoreUnavailable(StoreError):
    """The session store did not answer in time or could not be reached; nothing was
    written. An outage: the same call may succeed once the store is back."""


class SessionTooLarge(SessionError, ValueError):
    """Setting a value would make the session larger than ``max_size``; nothing was stored."""


class UnreadableRecord(ZerodownError):
    """This release cannot read the payload safely; the stored bytes were not touched."""

    def __init__(
        self,
        reason: str,
        *,
        type_name: str,
        written_version: int | None = None,
        reader_version: int | None = None,
        another_release: bool = False,
    ) -> None:
        self.reason = reason
        #: Well-formed data of another release that a release may read (a newer one's
        #: record), rather than data nothing can read (corrupt bytes, a malformed envelope).
        self.another_release = another_release
        self.type_name = type_name
        self.written_version = written_version
        self.reader_version = reader_version
        versions = (
            f" (written by version {written_version}, this release reads version {reader_version})"
            if written_version is not None
            else ""
        )
        super().__init__(f"cannot read a {type_name!r} record{versions}: {reason}")
