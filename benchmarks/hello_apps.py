"""The same hello-world Starlette app, bare and wrapped by zerodown."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import zerodown
from zerodown._types import ASGIApp, Receive, Scope, Send


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


bare = Starlette(routes=[Route("/", hello)])
wrapped = zerodown.ASGIMiddleware(Starlette(routes=[Route("/", hello)]))


class PassThrough:
    """A pure ASGI middleware that does nothing: the floor any middleware layer costs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


pass_through = PassThrough(Starlette(routes=[Route("/", hello)]))
