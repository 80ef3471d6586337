"""A Starlette app wrapped by zerodown.

uvicorn examples.starlette_app:app --timeout-keep-alive 75
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown
from examples._common import RELEASE, register_checks, sleep_ms


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"}, headers={"X-Release": RELEASE})


async def slow(request: Request) -> JSONResponse:
    try:
        ms = sleep_ms(request.query_params.get("ms"))
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    await asyncio.sleep(ms / 1000)
    return JSONResponse({"slept_ms": ms}, headers={"X-Release": RELEASE})


register_checks(zerodown.get_health())
app = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", index), Route("/slow", slow)]))
