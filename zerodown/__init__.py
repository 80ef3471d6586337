"""zerodown: rotate WSGI and ASGI apps with zero failed requests and no lost sessions.

The package is two products. The runtime library, which apps import: the lifecycle
(``_lifecycle``), the middleware and their probes (``_asgi``, ``_wsgi``, ``_probes``),
health checks (``_health/``), sessions (``_sessions/``), records (``_records/``) and the
server integrations (``_servers/``, ``_signals``). The tooling, which a person runs from a
shell: the ``zerodown`` command (``_cli/``, with ``zerodown rehearse`` in
``_cli/rehearse/`` and ``zerodown migrations check`` in ``_cli/migrations/``). Imports go
one way: the tooling uses the runtime, never the reverse, and ``import zerodown`` imports
no optional dependency. The public API is this module and ``zerodown.health``,
``zerodown.sessions``, ``zerodown.codec``, ``zerodown.migrations``, ``zerodown.openfeature``
and ``zerodown.gunicorn``; ``docs/architecture.md`` draws the whole layout.
"""

from . import health as health  # the module: zerodown.health.postgres(...)
from ._asgi import ASGIMiddleware
from ._errors import ConfigurationError, ZerodownError
from ._health.model import Check, CheckResult
from ._health.registry import Health, get_health
from ._lifecycle import Lifecycle, get_lifecycle
from ._phase import Phase
from ._probes import ProbeAccess, ProbePaths
from ._settings import Settings
from ._version import __version__
from ._warmup import Warmup
from ._wsgi import WSGIMiddleware

__all__ = [
    "ASGIMiddleware",
    "Check",
    "CheckResult",
    "ConfigurationError",
    "Health",
    "Lifecycle",
    "Phase",
    "ProbeAccess",
    "ProbePaths",
    "Settings",
    "WSGIMiddleware",
    "Warmup",
    "ZerodownError",
    "__version__",
    "get_health",
    "get_lifecycle",
]
