"""The Django project's WSGI entry point, wrapped by zerodown (under gunicorn, add the hooks
of ``zerodown.gunicorn`` to its config)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

import zerodown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = zerodown.WSGIMiddleware(get_wsgi_application())
