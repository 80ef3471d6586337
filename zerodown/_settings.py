"""Settings shared by every part of zerodown, read from arguments and ``ZERODOWN_*`` variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict, Unpack

from ._errors import ConfigurationError

#: Seconds between SIGTERM and the listener closing. Covers endpoint propagation in
#: Kubernetes with kube-proxy and ingress-nginx (1-5 s observed, see the docs' timing page).
DEFAULT_SHUTDOWN_DELAY = 5.0
DEFAULT_DRAIN_TIMEOUT = 15.0
DEFAULT_CALLBACK_TIMEOUT = 5.0
#: Seconds kept free in the budget for process start-up of the exit path and signal delivery.
BUDGET_MARGIN = 2.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsOverrides(TypedDict, total=False):
    """Settings given in code, each winning over its ``ZERODOWN_*`` variable."""

    shutdown_delay: float | None
    drain_timeout: float | None
    callback_timeout: float | None
    grace_period: float | None
    disabled: bool | None


@dataclass(frozen=True, slots=True)
class Settings:
    """Timing and switches of the shutdown sequence.

    Arguments given in code win over the environment, except ``ZERODOWN_DISABLED=1``,
    which always turns zerodown off so that the same build can be compared with and
    without it.
    """

    shutdown_delay: float = DEFAULT_SHUTDOWN_DELAY
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT
    grace_period: float | None = None
    disabled: bool = False

    @classmethod
    def load(
        cls, *, environ: Mapping[str, str] | None = None, **given: Unpack[SettingsOverrides]
    ) -> Settings:
        env = os.environ if environ is None else environ
        env_disabled = _read_bool(env, "ZERODOWN_DISABLED")
        delay = read_seconds(given.get("shutdown_delay"), env, "ZERODOWN_SHUTDOWN_DELAY")
        drain = read_seconds(given.get("drain_timeout"), env, "ZERODOWN_DRAIN_TIMEOUT")
        callback = read_seconds(given.get("callback_timeout"), env, "ZERODOWN_CALLBACK_TIMEOUT")
        return cls(
            shutdown_delay=DEFAULT_SHUTDOWN_DELAY if delay is None else delay,
            drain_timeout=DEFAULT_DRAIN_TIMEOUT if drain is None else drain,
            callback_timeout=DEFAULT_CALLBACK_TIMEOUT if callback is None else callback,
            grace_period=read_seconds(given.get("grace_period"), env, "ZERODOWN_GRACE_PERIOD"),
            disabled=bool(env_disabled) or bool(given.get("disabled")),
        )


def read_seconds(argument: float | None, env: Mapping[str, str], name: str) -> float | None:
    """The argument if given, else the variable ``name``, else None."""
    if argument is not None:
        return require_seconds(argument, f"the argument for {name}")
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a number of seconds; set it to a number such as 5 or 2.5"
        ) from None
    return require_seconds(value, f"{name}={raw!r}")


def require_seconds(value: object, where: str, *, positive: bool = False) -> float:
    """``value`` as seconds, or :class:`ConfigurationError` naming ``where`` it came from."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{where} must be a finite number of seconds {bound}, got {value!r}"
        )
    return float(value)


def _read_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a switch; set it to 1 (on) or 0 (off)")
