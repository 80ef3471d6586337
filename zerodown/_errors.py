"""Exceptions a user of zerodown can meet."""

from __future__ import annotations


class ZerodownError(Exception):
    """Base class of every error zerodown raises on purpose."""


class ConfigurationError(ZerodownError, ValueError):
    """A setting is malformed; the message names it and says what to set instead."""
