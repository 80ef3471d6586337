"""``settings.ZERODOWN``: zerodown's settings among Django's.

Each timing setting wins over its ``ZERODOWN_*`` variable, as an argument given in code
does (``ZERODOWN_DISABLED=1`` still turns zerodown off, so that the same build can be
compared with and without it)::

    ZERODOWN = {
        "shutdown_delay": 5,            # ZERODOWN_SHUTDOWN_DELAY
        "drain_timeout": 15,            # ZERODOWN_DRAIN_TIMEOUT
        "callback_timeout": 5,          # ZERODOWN_CALLBACK_TIMEOUT
        "grace_period": 30,             # ZERODOWN_GRACE_PERIOD
        "checks": True,                 # register the health checks of DATABASES and CACHES
        "sessions": {...},              # zerodown.django.sessions, see there
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from .._errors import ConfigurationError
from .._settings import Settings, SettingsOverrides

TIMINGS = frozenset(SettingsOverrides.__annotations__)
KNOWN = TIMINGS | {"checks", "sessions"}


def zerodown_settings() -> Mapping[str, Any]:
    """``settings.ZERODOWN``, checked: a mapping of names zerodown knows."""
    given = getattr(settings, "ZERODOWN", None)
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ConfigurationError(
            f"settings.ZERODOWN must be a dict, got {type(given).__name__}; e.g. "
            'ZERODOWN = {"shutdown_delay": 5}'
        )
    unknown = sorted(set(given) - KNOWN)
    if unknown:
        raise ConfigurationError(
            f"settings.ZERODOWN has {', '.join(map(repr, unknown))}, which zerodown does not "
            f"know; it knows {', '.join(sorted(KNOWN))}"
        )
    return given


def section(name: str) -> Mapping[str, Any]:
    """``settings.ZERODOWN[name]``, a mapping (empty when not given)."""
    value = zerodown_settings().get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f'settings.ZERODOWN["{name}"] must be a dict, got {type(value).__name__}'
        )
    return value


def lifecycle_settings() -> Settings:
    """zerodown's timing: ``settings.ZERODOWN``, then the ``ZERODOWN_*`` variables, then
    the defaults."""
    given = zerodown_settings()
    overrides: SettingsOverrides = {}
    for name in TIMINGS & set(given):
        overrides[name] = given[name]  # type: ignore[literal-required]
    return Settings.load(**overrides)
