"""A Starlette app wrapped by zerodown.

uvicorn examples.starlette_app:app --timeout-keep-alive 75
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

import zerodown
from examples._common import RELEASE, add_to_cart, register_checks, session_options, sleep_ms
from zerodown.sessions import SessionMiddleware


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"}, headers={"X-Release": RELEASE})


async def slow(request: Request) -> JSONResponse:
    try:
        ms = sleep_ms(request.query_params.get("ms"))
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    await asyncio.sleep(ms / 1000)
    return JSONResponse({"slept_ms": ms}, headers={"X-Release": RELEASE})


async def cart(request: Request) -> JSONResponse:
    return JSONResponse({"items": request.session.get("cart", [])})


async def cart_add(request: Request) -> JSONResponse:
    try:
        items = add_to_cart(request.session, request.query_params.get("item"))
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"items": items}, headers={"X-Release": RELEASE})


register_checks(zerodown.get_health())
routes = [Route("/", index), Route("/slow", slow)]
sessions = session_options()
inner: ASGIApp = Starlette(routes=routes)
if sessions is not None:
    routes += [Route("/cart", cart), Route("/cart/add", cart_add, methods=["POST"])]
    inner = SessionMiddleware(Starlette(routes=routes), **sessions)
app = zerodown.ASGIMiddleware(inner)
