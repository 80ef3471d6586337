"""An app whose shutdown callbacks take up to 20 s: ``zerodown doctor --app`` counts them."""

from __future__ import annotations

import zerodown
from examples.starlette_app import inner

lifecycle = zerodown.get_lifecycle()
lifecycle.on_shutdown(lambda: None, timeout=20)
app = zerodown.ASGIMiddleware(inner)
