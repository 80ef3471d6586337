"""The Flask example with a stuck-threads liveness check that trips after half a second."""

from __future__ import annotations

import zerodown
from examples.flask_app import app
from zerodown.health import stuck_threads

zerodown.get_health().add(stuck_threads(limit=0.5, name="threads-fast"))

__all__ = ["app"]
