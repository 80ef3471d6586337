"""What a health check is: its options, one run's result, and a probe's report."""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict, cast

from .._errors import ConfigurationError
from .._settings import require_seconds

Status = Literal["pass", "warn", "fail"]
#: A check: returns None, a bool or a dict (IETF fields), or raises; sync or ``async def``.
CheckFunction = Callable[[], object]

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"

#: Names appear in URLs (``/readyz/NAME``) and as JSON keys.
_CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
#: Seconds a check may run unless it says otherwise.
DEFAULT_CHECK_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one run of a check found. ``details`` are extra IETF fields from the check."""

    status: Status
    output: str = ""
    observed_value: object = None
    observed_unit: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    #: ``time.time()`` when the run ended.
    finished_at: float = 0.0
    duration: float = 0.0

    @property
    def passing(self) -> bool:
        return self.status != "fail"


class CheckOptions(TypedDict, total=False):
    """The options of a :class:`Check` besides its name and function, for the functions
    that pass them on (the built-in checks, :meth:`Health.check`). Their defaults are
    :class:`Check`'s."""

    timeout: float
    critical: bool
    groups: Collection[str]
    component_type: str
    cache_ttl: float
    interval: float | None
    failure_threshold: int
    success_threshold: int
    max_backoff: float
    #: Deprecated name of ``groups``.
    probes: Collection[str] | None


@dataclass(frozen=True)
class Check:
    """A named dependency or process condition, and how often and how long to ask it.

    ``groups`` are the groups the check belongs to: ``"readiness"`` (the default),
    ``"liveness"``, ``"startup"`` or names of your own (``probes`` is its deprecated
    name). A check that is not ``critical``
    makes the status ``warn`` instead of ``fail`` and never fails a probe.
    ``failure_threshold`` / ``success_threshold`` damp flapping as Kubernetes' probe fields
    do: the reported status changes only after that many runs in a row say so.
    With ``interval`` set, a background thread runs the check that often and probes read
    the last result; otherwise a probe runs it when the cached result is older than
    ``cache_ttl``. After consecutive failures the next run waits 1 s, 2 s, 4 s, ... up to
    ``max_backoff``. ``secrets`` are strings (DSNs, passwords) redacted from all output.
    """

    name: str
    function: CheckFunction
    timeout: float = DEFAULT_CHECK_TIMEOUT
    critical: bool = True
    groups: Collection[str] = (READINESS,)
    component_type: str = "component"
    cache_ttl: float = 1.0
    interval: float | None = None
    failure_threshold: int = 1
    success_threshold: int = 1
    max_backoff: float = 5.0
    secrets: Collection[str] = ()
    #: Deprecated name of ``groups``; reads as ``groups``.
    probes: Collection[str] | None = field(default=None, repr=False, compare=False)
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _CHECK_NAME.match(self.name):
            raise ConfigurationError(
                f"check name {self.name!r} is not usable in a URL: use up to 64 letters, "
                "digits, '_', '.', ':' or '-', starting with a letter or digit"
            )
        if not callable(self.function):
            raise ConfigurationError(f"check {self.name!r}: function must be callable")
        given = self.groups
        if self.probes is not None:
            warnings.warn(
                "Check(probes=...) is deprecated; name the groups with groups=...",
                DeprecationWarning,
                stacklevel=3,
            )
            given = self.probes
        groups = frozenset([given] if isinstance(given, str) else given)
        if not groups:
            raise ConfigurationError(f"check {self.name!r} belongs to no group; name at least one")
        where = f"check {self.name!r}:"
        require_seconds(self.timeout, f"{where} timeout", positive=True)
        require_seconds(self.cache_ttl, f"{where} cache_ttl")
        require_seconds(self.max_backoff, f"{where} max_backoff")
        if self.interval is not None:
            require_seconds(self.interval, f"{where} interval", positive=True)
        for threshold in ("failure_threshold", "success_threshold"):
            value = getattr(self, threshold)
            if not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"check {self.name!r}: {threshold} must be an int >= 1")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "probes", groups)
        object.__setattr__(self, "secrets", tuple(s for s in self.secrets if s))
        call = getattr(self.function, "__call__", None)  # noqa: B004 - async callable objects
        is_async = inspect.iscoroutinefunction(self.function) or inspect.iscoroutinefunction(call)
        object.__setattr__(self, "is_async", is_async)

    @property
    def group_set(self) -> frozenset[str]:
        """``groups``, which ``__post_init__`` made a frozenset."""
        return cast(frozenset[str], self.groups)

    def shown_status(self, result: CheckResult) -> Status:
        """The status as reported: a failing check that is not critical only warns."""
        if result.status == "fail" and not self.critical:
            return "warn"
        return result.status


@dataclass(frozen=True, slots=True)
class Report:
    """The checks a probe ran and the status they add up to."""

    status: Status
    results: tuple[tuple[Check, CheckResult], ...] = ()

    @classmethod
    def of(cls, results: Iterable[tuple[Check, CheckResult]]) -> Report:
        results = tuple(results)
        shown = {check.shown_status(result) for check, result in results}
        status: Status = "fail" if "fail" in shown else "warn" if "warn" in shown else "pass"
        return cls(status, results)
