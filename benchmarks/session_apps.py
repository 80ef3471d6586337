"""The same session-reading endpoint with zerodown's sessions and with starsessions, both on
the Redis at REDIS_URL."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starsessions import SessionAutoloadMiddleware
from starsessions import SessionMiddleware as StarSessions
from starsessions.stores.redis import RedisStore as StarRedisStore

from zerodown.sessions import RedisStore, SessionMiddleware

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "benchmark-secret-of-32-characters"
LIFETIME = 14 * 24 * 3600


async def read(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.session.get("user")})


async def login(request: Request) -> Response:
    request.session["user"] = "ada"
    return Response("ok")


def routes() -> Starlette:
    return Starlette(routes=[Route("/", read), Route("/login", login, methods=["POST"])])


zerodown_app = SessionMiddleware(
    routes(), store=RedisStore(REDIS_URL), secrets=[SECRET], secure=False, max_age=LIFETIME
)
# Sliding expiry like zerodown's; loaded on every request, as zerodown does with a cookie.
starsessions_app = StarSessions(
    SessionAutoloadMiddleware(routes()),
    store=StarRedisStore(url=REDIS_URL),
    lifetime=LIFETIME,
    rolling=True,
    cookie_https_only=False,
)
