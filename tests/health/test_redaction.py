"""Redaction is a property of every string that leaves the process: whatever shape a secret
comes in and wherever it stands, it does not come out."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.asgi_harness import call, http_scope
from zerodown import ASGIMiddleware, Health, Lifecycle, ProbeAccess
from zerodown._redact import REDACTED, redact
from zerodown.health import http

# Secrets: a recognisable head, then characters passwords hold, '@', ':' and '%' included.
SECRETS = st.builds(
    lambda tail: f"Zq{tail}",
    st.text(alphabet="abcXYZ0123456789!$*+-._~@:%^()", min_size=6, max_size=20),
)
AROUND = st.text(alphabet="abc ,;\n(){}[]'\"", max_size=12)
KEYS = ["password", "PGPASSWORD", "access_token", "client_secret", "api_key", "db_passwd"]


def shapes(secret: str, key: str) -> list[str]:
    """The forms a secret takes in exception texts, reprs, JSON, environments and headers."""
    encoded = quote(secret, safe="")
    return [
        f"postgresql://app:{encoded}@db.internal:5432/app",
        f"redis://:{encoded}@cache:6379/0",
        f"{key}={secret}",
        f"{key}: {secret}",
        f"'{key}': '{secret}'",
        f'"{key}": "{secret}"',
        f"{key}='{secret}'",
        f"Authorization: Bearer {encoded}",
    ]


@settings(max_examples=300, deadline=None)
@given(secret=SECRETS, key=st.sampled_from(KEYS), before=AROUND, after=AROUND)
def test_no_shape_or_position_lets_a_secret_out(
    secret: str, key: str, before: str, after: str
) -> None:
    for shape in shapes(secret, key):
        text = before + shape + after
        redacted = redact(text)
        assert secret not in redacted, (text, redacted)
        assert quote(secret, safe="") not in redacted, (text, redacted)
        assert REDACTED in redacted


@settings(max_examples=200, deadline=None)
@given(secret=SECRETS, before=AROUND, after=AROUND)
def test_a_given_secret_goes_in_every_form(secret: str, before: str, after: str) -> None:
    url = f"https://user:{quote(secret, safe='')}@db.internal/x"
    for form in (secret, quote(secret, safe=""), url, f"{secret}@db.internal"):
        assert secret not in redact(before + form + after, [url])


def test_the_http_check_leaks_no_url_password(caplog: pytest.LogCaptureFixture) -> None:
    # http.client parses this URL's port as 'Sup3rS3cret@db.internal' and says so.
    check = http("http://admin:Sup3rS3cret@db.internal/health")
    health = Health(process_checks=False)
    health.add(check)
    lifecycle = Lifecycle()
    lifecycle.mark_ready()
    app = ASGIMiddleware(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        lifecycle=lifecycle,
        health=health,
        probe_access=ProbeAccess(details_for_loopback=True),
    )
    app._serving = True

    with caplog.at_level(logging.WARNING, logger="zerodown"):
        body = asyncio.run(call(app, http_scope("/readyz", query=b"verbose"))).body.decode()
    assert "fail" in body
    assert "Sup3rS3cret" not in body
    assert "Sup3rS3cret" not in caplog.text
