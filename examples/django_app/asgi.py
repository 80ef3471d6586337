"""The Django project's ASGI entry point, wrapped by zerodown.

Django answers no lifespan; zerodown speaks it for the app, so uvicorn's lifespan (and
with it zerodown's SIGTERM handling) works as for any ASGI app.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

import zerodown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = zerodown.ASGIMiddleware(get_asgi_application())
