"""What the sessions tests share: the secrets, the apps and their clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis as redis_py
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.bed import Service
from zerodown.sessions import (
    SessionMiddleware,
    SessionStore,
    SessionTooLarge,
    init_flask,
)

SECRET = "first-secret-of-32-characters-xx"
OLD_SECRET = "older-secret-of-32-characters-xx"
PREFIX = "zerodown:session:"


class Gates:
    """Events the test opens to interleave concurrent requests deterministically."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def arrival(self, name: str) -> asyncio.Event:
        return self.arrived.setdefault(name, asyncio.Event())

    async def hold(self, name: str | None) -> None:
        if name:
            self.arrival(name).set()
            await self.event(name).wait()


def make_app(gates: Gates, cart_type: type[Any] | None = None) -> Starlette:
    async def get(request: Request) -> JSONResponse:
        await gates.hold(request.query_params.get("gate"))
        return JSONResponse(dict(request.session.items()))

    async def put(request: Request) -> Response:
        session = request.session
        await gates.hold(request.query_params.get("gate"))
        try:
            session[request.query_params["key"]] = request.query_params.get("value", "")
        except SessionTooLarge as error:
            return JSONResponse({"error": str(error)}, status_code=413)
        return JSONResponse(dict(session.items()))

    async def noop(request: Request) -> Response:
        return Response("ok")

    async def login(request: Request) -> JSONResponse:
        request.session.regenerate()
        request.session["user"] = request.query_params["user"]
        return JSONResponse(dict(request.session.items()))

    async def logout(request: Request) -> Response:
        request.session.invalidate()
        return Response("bye")

    async def add_to_cart(request: Request) -> JSONResponse:
        assert cart_type is not None
        cart = request.session.get("cart") or cart_type()
        cart.items.append(request.query_params["item"])
        request.session["cart"] = cart
        return JSONResponse({"items": cart.items})

    async def loaded(request: Request) -> JSONResponse:
        await request.session.load()
        return JSONResponse(dict(request.session.items()))

    async def flash_logout(request: Request) -> Response:
        request.session.invalidate()
        request.session["flash"] = "you are logged out"
        return Response("bye")

    async def public(request: Request) -> Response:
        request.session["seen"] = "yes"
        return Response("cached", headers={"Cache-Control": "public, max-age=60"})

    async def many(request: Request) -> Response:
        for number in range(int(request.query_params["n"])):
            request.session[f"key{number}"] = number
        return Response("ok")

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.session["seen"] = websocket.session.get("user", "nobody")
        await websocket.send_json(dict(websocket.session.items()))
        await websocket.close()

    return Starlette(
        routes=[
            WebSocketRoute("/ws", socket),
            Route("/loaded", loaded),
            Route("/get", get),
            Route("/set", put, methods=["POST"]),
            Route("/noop", noop),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/cart/add", add_to_cart, methods=["POST"]),
            Route("/flash-logout", flash_logout, methods=["POST"]),
            Route("/public", public),
            Route("/many", many, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def client(
    store: SessionStore, gates: Gates | None = None, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = SessionMiddleware(
        make_app(gates or Gates(), options.pop("cart_type", None)),
        store=store,
        secrets=options.pop("secrets", [SECRET]),
        **options,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http


def with_cookie(value: str) -> dict[str, bytes]:
    """A Cookie header as a browser would send it (any bytes, not only ASCII)."""
    return {"cookie": f"session={value}".encode("latin-1", "replace")}


def commands(server: Service) -> dict[str, int]:
    """Calls per command so far, as the server counts them."""
    stats = redis_py.Redis.from_url(server.url).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def calls_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {name: after[name] - before.get(name, 0) for name in after}
    return {name: n for name, n in changed.items() if n and name not in ("info", "hello")}


def stored(server: Service) -> dict[bytes, dict[bytes, bytes]]:
    """Every stored session's fields, without zerodown's own (their names start with NUL)."""
    connection = redis_py.Redis.from_url(server.url)
    return {
        key: {k: v for k, v in connection.hgetall(key).items() if not k.startswith(b"\x00")}
        for key in connection.keys(f"{PREFIX}*")
    }


def run(coroutine: Callable[[], Any]) -> Any:
    return asyncio.run(coroutine())


def flask_client(
    store: SessionStore, *, stall: Callable[[], None] | None = None, **options: Any
) -> httpx.Client:
    """A Flask app on zerodown's sessions; ``/stall/...`` calls ``stall()`` after the session
    was read and before the response starts, so that the save meets a stalled store."""
    from flask import Flask, jsonify, request, session

    app = Flask(__name__)

    @app.post("/stall/set")
    def stall_then_set() -> Any:
        session["user"] = session.get("user", "")  # read it first, change it after the stall
        assert stall is not None
        stall()
        session["user"] = request.args["value"]
        return jsonify(dict(session.items()))

    @app.post("/stall/logout")
    def stall_then_logout() -> Any:
        session.get("user")
        assert stall is not None
        stall()
        session.invalidate()  # type: ignore[attr-defined]
        return "logged out"

    @app.get("/get")
    def get() -> Any:
        return jsonify(dict(session.items()))

    @app.post("/set")
    def put() -> Any:
        session[request.args["key"]] = request.args.get("value", "")
        return jsonify(dict(session.items()))

    @app.get("/noop")
    def noop() -> Any:
        return "ok"

    @app.post("/append")
    def append() -> Any:
        session["list"].append(request.args["value"])  # in place: Flask's idiom follows
        session.modified = True
        return jsonify(dict(session.items()))

    @app.post("/logout")
    def logout() -> Any:
        session.invalidate()  # type: ignore[attr-defined]
        return "bye"

    init_flask(app, store=store, secrets=[SECRET], **options)
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://testserver")
