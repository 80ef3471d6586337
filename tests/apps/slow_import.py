"""The Flask and Starlette examples behind an import that takes IMPORT_SECONDS (a big app)."""

from __future__ import annotations

import os
import time

time.sleep(float(os.environ.get("IMPORT_SECONDS", "0")))

from examples.flask_app import app as wsgi_app  # noqa: E402
from examples.starlette_app import app as asgi_app  # noqa: E402

__all__ = ["asgi_app", "wsgi_app"]
