"""Keeping DSNs, passwords and tokens out of every string that leaves the process: probe
bodies, log lines, telemetry."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

REDACTED = "[redacted]"

# scheme://user:password@host -> scheme://[redacted]@host; up to the last '@' before the
# host, since a password may hold one.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]+@")
# password=..., 'token': '...', "client_secret": "...", PGPASSWORD=..., access_token: ...
# (libpq keyword DSNs, environment dumps, a dict's repr, JSON, exception texts)
_SECRET_KEY = r"[A-Za-z0-9_-]*(?:password|passwd|pwd|secret|token|api[_-]?key|credentials?)"
_SECRET_PAIR = re.compile(
    rf"(?i)(?P<key>(?P<quote>['\"]?)\b{_SECRET_KEY}(?P=quote))(?P<sep>\s*[=:]\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&'\"}\]]+)"
)
# Authorization: Bearer abc / Basic dXNlcjpwYXNz
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<sep>\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets (in every form they may take in a message), URL
    credentials, ``password=`` style values or ``Bearer`` tokens."""
    # Longest first, so a DSN goes whole before a shorter secret inside it is matched.
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    text = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    text = _SECRET_PAIR.sub(_redacted_pair, text)
    return _AUTH_SCHEME.sub(rf"\g<scheme>\g<sep>{REDACTED}", text)


def secret_forms(secret: str) -> Iterator[str]:
    """``secret`` and how it may appear in a message: percent-decoded or -encoded, and, for
    a URL, its password alone (a parser's error names the part it choked on)."""
    yield secret
    yield unquote(secret)
    yield quote(secret, safe="")
    if "://" in secret:
        try:
            password = urlsplit(secret).password
        except ValueError:
            password = None
        if password and len(password) >= 4:  # too short a form would redact other text
            yield password
            yield unquote(password)


def _redacted_pair(match: re.Match[str]) -> str:
    value = match["value"]
    quote_mark = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['key']}{match['sep']}{quote_mark}{REDACTED}{quote_mark}"
