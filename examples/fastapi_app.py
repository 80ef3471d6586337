"""A FastAPI app wrapped by zerodown.

uvicorn examples.fastapi_app:app --timeout-keep-alive 75
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, HTTPException, Query, Request, Response

import zerodown
from examples._common import MAX_SLEEP_MS, RELEASE, add_to_cart, register_checks, session_options
from zerodown.sessions import SessionMiddleware

api = FastAPI()


@api.get("/")
async def index(response: Response) -> dict[str, str]:
    response.headers["X-Release"] = RELEASE
    return {"hello": "world"}


@api.get("/slow")
async def slow(response: Response, ms: int = Query(100, ge=0, le=MAX_SLEEP_MS)) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    response.headers["X-Release"] = RELEASE
    return {"slept_ms": ms}


sessions = session_options()
if sessions is not None:

    @api.get("/cart")
    async def cart(request: Request) -> dict[str, list[str]]:
        return {"items": request.session.get("cart", [])}

    @api.post("/cart/add")
    async def cart_add(
        request: Request, response: Response, item: str = ""
    ) -> dict[str, list[str]]:
        try:
            items = add_to_cart(request.session, item)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        response.headers["X-Release"] = RELEASE
        return {"items": items}


register_checks(zerodown.get_health())
app = zerodown.ASGIMiddleware(api if sessions is None else SessionMiddleware(api, **sessions))
