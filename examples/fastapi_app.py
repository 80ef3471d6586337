"""A FastAPI app wrapped by zerodown.

uvicorn examples.fastapi_app:app --timeout-keep-alive 75
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Query, Response

import zerodown
from examples._common import MAX_SLEEP_MS, RELEASE, register_checks

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


register_checks(zerodown.get_health())
app = zerodown.ASGIMiddleware(api)
