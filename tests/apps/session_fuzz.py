"""A Starlette app on zerodown's sessions in Redis (``REDIS_URL``), with records, for the
fuzzers: ``/get`` shows the session, ``/login`` writes one."""

from __future__ import annotations

import os

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown
from zerodown.codec import Record, Registry
from zerodown.sessions import RedisStore, SessionMiddleware

SECRET = "first-secret-of-32-characters-xx"
records = Registry()


class Card(Record, tag="card", tag_field="type"):
    last4: str = ""


class Bank(Record, tag="bank", tag_field="type"):
    iban: str = ""


@records.record("cart", version=2)
class Cart(Record):
    items: list[str] = msgspec.field(default_factory=list)
    pay: Card | Bank | None = None


async def get(request: Request) -> JSONResponse:
    return JSONResponse({key: repr(value) for key, value in request.session.items()})


async def login(request: Request) -> JSONResponse:
    request.session.regenerate()
    request.session["user"] = "ada"
    request.session["cart"] = Cart(items=["book"], pay=Card(last4="4242"))
    return JSONResponse({"ok": True})


app = zerodown.ASGIMiddleware(
    SessionMiddleware(
        Starlette(routes=[Route("/get", get), Route("/login", login, methods=["POST"])]),
        store=RedisStore(os.environ["REDIS_URL"]),
        secrets=[SECRET],
        records=records,
        on_unavailable=os.environ.get("ON_UNAVAILABLE", "anonymous"),  # type: ignore[arg-type]
    )
)
