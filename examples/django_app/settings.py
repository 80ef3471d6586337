"""Settings of the example Django project: zerodown's app (health and system checks), its
session engine on Redis, and the database of ``DATABASE_URL`` when there is one.

``DJANGO_SESSIONS`` picks where sessions live, for rehearsing the switch of engines:

- ``zerodown`` (the default with ``REDIS_URL``): zerodown's engine on Redis;
- ``db``: Django's database engine (the release before the switch);
- ``switching``: zerodown's engine, reading and writing the database engine too (the one
  release that switches; the next one is ``zerodown``);
- ``cookies`` (the default without ``REDIS_URL``): Django's signed cookies.
"""

from __future__ import annotations

import os

from examples.django_app.database import database_from_url

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS = ["django.contrib.sessions", "zerodown.django"]
MIDDLEWARE = ["zerodown.django.sessions.SessionMiddleware"]
DATABASES = (
    {"default": database_from_url(os.environ["DATABASE_URL"])}
    if os.environ.get("DATABASE_URL")
    else {}
)
USE_TZ = True
# Behind a proxy that terminates TLS (HAProxy in zerodown rehearse): cookies stay Secure.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "1") != "0"

_redis_url = os.environ.get("REDIS_URL")
_sessions = os.environ.get("DJANGO_SESSIONS", "zerodown" if _redis_url else "cookies")
SESSION_ENGINE_BEFORE = "django.contrib.sessions.backends.db"
SESSION_ENGINE = {
    "zerodown": "zerodown.django.sessions",
    "switching": "zerodown.django.sessions",
    "db": SESSION_ENGINE_BEFORE,
    "cookies": "django.contrib.sessions.backends.signed_cookies",
}[_sessions]
_previous = {"previous_engine": SESSION_ENGINE_BEFORE} if _sessions == "switching" else {}
ZERODOWN = {"sessions": {"store": _redis_url, **_previous}} if _redis_url else {}
