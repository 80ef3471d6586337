"""Session keys for Django's cookie: signed, and of the shape Django's own engines store.

Django's database engine keeps a key in a 40-character column, and its file engine takes
only lowercase letters and digits (case-insensitive file systems). So a key is 24 random
characters of that alphabet (124 bits) followed by 16 of its HMAC-SHA256 (82 bits): 40 in
all, a key every Django engine can hold, as the release that still writes the previous
engine needs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Sequence

from .._sessions.session import signing_keys

ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 24
SIGNATURE_LENGTH = 16
KEY_LENGTH = ID_LENGTH + SIGNATURE_LENGTH
#: Django's own engines make keys of 32 characters of the same alphabet, unsigned.
DJANGO_KEY_LENGTH = 32


class KeySigner:
    """Makes and verifies keys: the first secret signs, every secret verifies."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        self._keys = signing_keys(
            keys, 'ZERODOWN = {"sessions": {"secrets": ["new-secret", "old-secret"]}}'
        )

    def new_key(self) -> str:
        session_id = "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))
        return session_id + self._signature(self._keys[0], session_id)

    def verifies(self, key: object) -> bool:
        """Whether ``key`` (any value at all: cookies are the client's) is one we signed."""
        if not isinstance(key, str) or len(key) != KEY_LENGTH or not key.isascii():
            return False
        session_id, given = key[:ID_LENGTH], key[ID_LENGTH:].encode()
        return any(
            hmac.compare_digest(given, self._signature(secret, session_id).encode())
            for secret in self._keys
        )

    @staticmethod
    def _signature(secret: bytes, session_id: str) -> str:
        number = int.from_bytes(hmac.new(secret, session_id.encode(), hashlib.sha256).digest())
        digits = []
        for _ in range(SIGNATURE_LENGTH):  # the lowest base-36 digits of the MAC
            number, digit = divmod(number, len(ALPHABET))
            digits.append(ALPHABET[digit])
        return "".join(digits)


def is_django_key(key: object) -> bool:
    """Whether ``key`` has the shape of a key Django's own engines made."""
    return (
        isinstance(key, str)
        and len(key) == DJANGO_KEY_LENGTH
        and all(character in ALPHABET for character in key)
    )
