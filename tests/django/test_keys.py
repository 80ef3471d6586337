"""The Django engine's session keys: signed, and of the shape Django's own engines hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerodown import ConfigurationError
from zerodown.django._keys import ALPHABET, KEY_LENGTH, KeySigner, is_django_key

SIGNER = KeySigner(["new-secret-0123456789", "old-secret-0123456789"])


def test_a_new_key_fits_djangos_column_and_file_names() -> None:
    key = SIGNER.new_key()
    assert len(key) == KEY_LENGTH == 40
    assert set(key) <= set(ALPHABET)
    assert SIGNER.verifies(key)


def test_every_secret_verifies_and_the_first_signs() -> None:
    old = KeySigner(["old-secret-0123456789"])
    key = old.new_key()
    assert SIGNER.verifies(key)
    assert not KeySigner(["new-secret-0123456789"]).verifies(key)


def test_a_key_changed_in_one_character_is_refused() -> None:
    key = SIGNER.new_key()
    for position in (0, 23, 24, 39):
        other = ALPHABET[(ALPHABET.index(key[position]) + 1) % len(ALPHABET)]
        assert not SIGNER.verifies(key[:position] + other + key[position + 1 :])


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60), st.none(), st.integers()))
def test_any_cookie_value_is_refused_or_verified_never_an_error(value: object) -> None:
    assert SIGNER.verifies(value) is False


def test_djangos_own_keys_are_recognised_by_shape() -> None:
    assert is_django_key("a" * 32)
    assert not is_django_key("A" * 32)
    assert not is_django_key(SIGNER.new_key())
    assert not is_django_key(None)


@pytest.mark.parametrize("secrets", [[], "one-string-secret-long", ["short"]])
def test_secrets_that_cannot_sign_are_refused_with_what_to_do(secrets: object) -> None:
    with pytest.raises(ConfigurationError, match="session secret"):
        KeySigner(secrets)  # type: ignore[arg-type]
