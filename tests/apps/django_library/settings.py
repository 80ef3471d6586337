"""Settings of the test project: PostgreSQL (or SQLite) from DATABASE_URL, one app with
migrations, zerodown's Django app; SESSION_ENGINE from TEST_SESSION_ENGINE."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

SECRET_KEY = "tests-only-not-secret"
INSTALLED_APPS = ["tests.apps.django_library.library", "zerodown.django"]
SESSION_ENGINE = os.environ.get("TEST_SESSION_ENGINE", "django.contrib.sessions.backends.db")
USE_TZ = True
_url = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres"))
DATABASES = (
    {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _url.path}}
    if _url.scheme == "sqlite"
    else {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "PASSWORD": _url.password or "",
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or 5432),
        }
    }
)
