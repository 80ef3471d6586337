"""zerodown: rotate WSGI and ASGI apps with zero failed requests and no lost sessions."""

from . import health as health  # the module: zerodown.health.postgres(...)
from ._asgi import ASGIMiddleware
from ._errors import ConfigurationError, ZerodownError
from ._health.model import Check, CheckResult
from ._health.registry import Health, get_health
from ._lifecycle import Lifecycle, Phase, get_lifecycle
from ._probes import ProbePaths
from ._settings import Settings
from ._version import __version__
from ._wsgi import WSGIMiddleware

__all__ = [
    "ASGIMiddleware",
    "Check",
    "CheckResult",
    "ConfigurationError",
    "Health",
    "Lifecycle",
    "Phase",
    "ProbePaths",
    "Settings",
    "WSGIMiddleware",
    "ZerodownError",
    "__version__",
    "get_health",
    "get_lifecycle",
]
