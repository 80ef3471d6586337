"""Settings of the test project: PostgreSQL (or SQLite) from DATABASE_URL, one app with
migrations, zerodown's Django app; SESSION_ENGINE from TEST_SESSION_ENGINE."""

from __future__ import annotations

import os

from examples.django_app.database import database_from_url

SECRET_KEY = "tests-only-not-secret"
INSTALLED_APPS = ["tests.apps.django_library.library", "zerodown.django"]
SESSION_ENGINE = os.environ.get("TEST_SESSION_ENGINE", "django.contrib.sessions.backends.db")
USE_TZ = True
DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    )
}
