"""Keeping DSNs, passwords and tokens out of probe bodies and log lines."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

# scheme://user:password@host -> scheme://[redacted]@host
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
# password=..., token: ..., api_key='...' (libpq keyword DSNs, exception texts)
_SECRET_PAIR = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|secret|token|api[_-]?key)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&]+)"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets, URL credentials or ``password=`` style values."""
    # Longest first, so a DSN goes whole before a shorter secret inside it is matched.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_PAIR.sub(rf"\g<key>\g<sep>{REDACTED}", text)
