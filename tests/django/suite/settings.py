"""Settings for Django's session tests against zerodown's engine: Django's own test app
``sessions_tests`` (from the source distribution, on ``sys.path``), an in-memory SQLite
for what those tests keep in a database, and the sessions in the redis-server at
``TEST_REDIS_URL``."""

from __future__ import annotations

import os

SECRET_KEY = "django-suite-only-not-secret"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "sessions_tests",
    "zerodown.django",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
SESSION_ENGINE = "zerodown.django.sessions"
ZERODOWN = {"sessions": {"store": os.environ["TEST_REDIS_URL"]}, "checks": False}
ROOT_URLCONF = "tests.django.suite.urls"
MIDDLEWARE = ["zerodown.django.sessions.SessionMiddleware"]
