"""Releases whose trouble shows only across releases, or only at their start.

``needs_shared_key``: every request reads a Redis key that it sets at start;
``deletes_shared_key``: the next release, which drops that key when it starts (as a
migration or a cleanup would) and does not need it, so its own answers are fine while the
stable release's fail. Both are factories, as ``--factory`` calls them.
``never_ready``: its readiness check fails with a reason, as a release run against a
database at another migration would.
"""

from __future__ import annotations

import os

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown

SHARED_KEY = "zerodown-test:feature-flags"
#: What the failing readiness check of ``never_ready`` says.
NOT_READY_REASON = "the database is at fe56fa70289e; this release runs on b7e3c1d2a9f0"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


async def _reads_key(request: Request) -> JSONResponse:
    flags = _redis().get(SHARED_KEY)
    if flags is None:
        return JSONResponse({"error": f"{SHARED_KEY} is gone"}, status_code=500)
    return JSONResponse({"flags": flags.decode()})


async def _ignores_key(request: Request) -> JSONResponse:
    return JSONResponse({"flags": "built in"})


def needs_shared_key() -> zerodown.ASGIMiddleware:
    _redis().set(SHARED_KEY, "on")
    return zerodown.ASGIMiddleware(Starlette(routes=[Route("/", _reads_key)]))


def deletes_shared_key() -> zerodown.ASGIMiddleware:
    _redis().delete(SHARED_KEY)
    return zerodown.ASGIMiddleware(Starlette(routes=[Route("/", _ignores_key)]))


_health = zerodown.Health()


@_health.check(name="migrations")
def _migrations() -> None:
    raise RuntimeError(NOT_READY_REASON)


never_ready = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", _ignores_key)]), health=_health)
