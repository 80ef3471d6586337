"""Health checks for the readiness, liveness and startup probes.

``health = zerodown.get_health()``, then ``health.add(zerodown.health.postgres(pool))`` or
``@health.check()`` on a function of your own. See ``docs/health.md``.
"""

from ._health.checks import (
    disk_space,
    event_loop_lag,
    http,
    migrations_applied,
    postgres,
    redis,
    stuck_threads,
)
from ._health.model import (
    LIVENESS,
    READINESS,
    STARTUP,
    Check,
    CheckFunction,
    CheckOptions,
    CheckResult,
    Report,
    Status,
)
from ._health.registry import Health, get_health

__all__ = [
    "LIVENESS",
    "READINESS",
    "STARTUP",
    "Check",
    "CheckFunction",
    "CheckOptions",
    "CheckResult",
    "Health",
    "Report",
    "Status",
    "disk_space",
    "event_loop_lag",
    "get_health",
    "http",
    "migrations_applied",
    "postgres",
    "redis",
    "stuck_threads",
]
