"""The same hello-world Starlette app, bare and wrapped by zerodown."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import zerodown


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


bare = Starlette(routes=[Route("/", hello)])
wrapped = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", hello)]))
