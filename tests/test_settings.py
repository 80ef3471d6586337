from __future__ import annotations

import pytest

from zerodown import ConfigurationError, Settings


def test_defaults_without_environment() -> None:
    settings = Settings.load(environ={})
    assert settings == Settings()
    assert settings.grace_period is None
    assert settings.disabled is False


def test_environment_fills_what_arguments_leave_out() -> None:
    env = {
        "ZERODOWN_SHUTDOWN_DELAY": "7.5",
        "ZERODOWN_DRAIN_TIMEOUT": "20",
        "ZERODOWN_GRACE_PERIOD": "45",
        "ZERODOWN_CALLBACK_TIMEOUT": "3",
    }
    settings = Settings.load(drain_timeout=9, environ=env)
    assert settings.shutdown_delay == 7.5
    assert settings.drain_timeout == 9
    assert settings.grace_period == 45
    assert settings.callback_timeout == 3


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("true", True), ("on", True), ("0", False), ("", False)]
)
def test_disabled_switch(raw: str, expected: bool) -> None:
    assert Settings.load(environ={"ZERODOWN_DISABLED": raw}).disabled is expected


def test_disabled_in_environment_wins_over_code() -> None:
    assert Settings.load(disabled=False, environ={"ZERODOWN_DISABLED": "1"}).disabled is True


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("ZERODOWN_SHUTDOWN_DELAY", "five", "is not a number of seconds"),
        ("ZERODOWN_DRAIN_TIMEOUT", "-1", "must be a finite number of seconds >= 0"),
        ("ZERODOWN_GRACE_PERIOD", "inf", "must be a finite number of seconds >= 0"),
        ("ZERODOWN_DISABLED", "maybe", "set it to 1 (on) or 0 (off)"),
    ],
)
def test_malformed_values_name_the_variable(name: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(environ={name: raw})
    assert name in str(caught.value)
    assert says in str(caught.value)


def test_negative_argument_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"ZERODOWN_SHUTDOWN_DELAY"):
        Settings.load(shutdown_delay=-2, environ={})
