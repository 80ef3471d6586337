"""Every error zerodown raises on purpose, in one hierarchy.

    ZerodownError
    ├── ConfigurationError        a setting or declaration is wrong (also a ValueError)
    ├── SessionError
    │   ├── StoreUnavailable      the session store did not answer in time, or failed
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


class StoreUnavailable(SessionError):
    """The session store did not answer in time or failed; nothing was written."""


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
    ) -> None:
        self.reason = reason
        self.type_name = type_name
        self.written_version = written_version
        self.reader_version = reader_version
        versions = (
            f" (written by version {written_version}, this release reads version {reader_version})"
            if written_version is not None
            else ""
        )
        super().__init__(f"cannot read a {type_name!r} record{versions}: {reason}")
