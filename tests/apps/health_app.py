"""A Starlette app with the checks the health tests need, configured by the environment.

``REDIS_URL`` adds a Redis check; ``DATABASE_URL`` opens an asyncpg pool at startup whose
statements PostgreSQL logs (so a test can count round trips on the server) and adds a
PostgreSQL check on it; ``BROKEN_DSN`` adds a non-critical PostgreSQL check that cannot
connect. ``CACHE_TTL`` sets the checks' cache.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import zerodown
from zerodown.health import postgres, redis

health = zerodown.get_health()
cache_ttl = float(os.environ.get("CACHE_TTL", "1"))
pool: Any = None

if "REDIS_URL" in os.environ:
    health.add(redis(os.environ["REDIS_URL"], cache_ttl=cache_ttl))
if "BROKEN_DSN" in os.environ:
    health.add(postgres(os.environ["BROKEN_DSN"], name="reports-db", critical=False))
if "DATABASE_URL" in os.environ:
    health.add(postgres(lambda: pool, cache_ttl=cache_ttl))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    if "DATABASE_URL" in os.environ:
        pool = await asyncpg.create_pool(
            os.environ["DATABASE_URL"], min_size=1, server_settings={"log_statement": "all"}
        )
    yield
    if pool is not None:
        await pool.close()


async def index(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", index)], lifespan=lifespan))
