"""An app with a long-running transaction of its own: every ``REPORT_EVERY`` seconds a
background report reads ``items`` and keeps its transaction open for ``REPORT_SECONDS``
while it "renders" (the classic slow work inside a transaction). ``/items`` reads and
writes the table. ``benchmarks/lock_timeout.py`` migrates it under load.

    DATABASE_URL=postgresql://... uvicorn benchmarks.report_app:app
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown

REPORT_EVERY = 2.5
REPORT_SECONDS = 2.0
SCHEMA = "CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, name text NOT NULL)"


async def _report_forever() -> None:
    while True:
        async with await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"]) as db:
            await db.execute("SELECT count(*) FROM items")
            await asyncio.sleep(REPORT_SECONDS)  # rendering, with the transaction open
            await db.commit()
        await asyncio.sleep(REPORT_EVERY - REPORT_SECONDS)


@contextlib.asynccontextmanager
async def _lifespan(_: Starlette) -> AsyncIterator[None]:
    report = asyncio.create_task(_report_forever())
    try:
        yield
    finally:
        report.cancel()


async def items(request: Request) -> JSONResponse:
    async with await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"]) as db:
        if request.method == "POST":
            await db.execute("INSERT INTO items (name) VALUES ('x')")
        row = await (await db.execute("SELECT count(*) FROM items")).fetchone()
    return JSONResponse({"items": row[0] if row else 0})


app = zerodown.ASGIMiddleware(
    Starlette(routes=[Route("/items", items, methods=["GET", "POST"])], lifespan=_lifespan)
)
