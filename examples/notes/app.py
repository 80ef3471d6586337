"""Notes: users register and log in (zerodown's sessions in Redis), their notes are in
PostgreSQL (SQLAlchemy, schema by Alembic), and zerodown makes it safe to rotate.

    alembic -c examples/notes/alembic.ini upgrade head
    DATABASE_URL=postgresql+psycopg://... REDIS_URL=redis://... \\
    ZERODOWN_SESSION_SECRETS=... uvicorn --factory examples.notes.app:create_app

Its users' own traffic, as k6 sends it, is ``examples/notes/k6/users.js``.

The releases of ``examples/notes/cases/`` (a column renamed at once, or the same rename
done as expand-contract) are this code with ``NOTES_COLUMNS`` saying which of
``notes.text`` and ``notes.body`` a release reads and writes, as its commits would;
``ALEMBIC_CONFIG`` (Alembic's own variable) says which migrations it ships with.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import zerodown
from examples.notes.schema import notes, users
from zerodown.health import migrations_applied, postgres, redis
from zerodown.sessions import RedisStore, SessionMiddleware

RELEASE = os.environ.get("ZERODOWN_RELEASE", "dev")
ALEMBIC_INI = Path(os.environ.get("ALEMBIC_CONFIG") or Path(__file__).with_name("alembic.ini"))
#: NOTES_COLUMNS: the column a release reads, and those it writes.
COLUMNS = {
    "text": ("text", ("text",)),
    "write-both": ("text", ("text", "body")),
    "read-body": ("body", ("text", "body")),
    "body": ("body", ("body",)),
}
MAX_NOTE = 2000
#: scrypt's cost: a login takes a few milliseconds of CPU, not a few hundred.
_SCRYPT = {"n": 2**12, "r": 8, "p": 1}


class _Session(Protocol):
    """What zerodown's session adds to the dict Starlette types ``request.session`` as."""

    def regenerate(self) -> None: ...
    def invalidate(self) -> None: ...


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` (libpq's form, as a platform or a rehearsal gives it) with psycopg."""
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else url


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def _credentials(form: dict[str, str]) -> tuple[str, str] | None:
    name, password = form.get("username", "").strip(), form.get("password", "")
    if not 1 <= len(name) <= 64 or not 8 <= len(password) <= 200:
        return None
    return name, password


async def _form(request: Request) -> dict[str, str]:
    """The request's JSON object, its string values; empty when it is not one."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {key: value for key, value in body.items() if isinstance(value, str)}


def _user_id(request: Request) -> int | None:
    user = request.session.get("user_id")
    return user if isinstance(user, int) else None


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "log in first"}, status_code=401)


def make_app(engine: AsyncEngine, columns: str = "text") -> Starlette:
    if columns not in COLUMNS:
        raise ValueError(f"NOTES_COLUMNS={columns!r}: expected one of {', '.join(COLUMNS)}")
    read, writes = COLUMNS[columns]
    read_column = notes.c[read]

    async def register(request: Request) -> JSONResponse:
        given = _credentials(await _form(request))
        if given is None:
            return JSONResponse(
                {"error": "a username of 1-64 characters and a password of 8-200"},
                status_code=400,
            )
        salt = secrets.token_bytes(16)
        try:
            async with engine.begin() as db:
                row = await db.execute(
                    insert(users)
                    .values(name=given[0], salt=salt, password_hash=_hash(given[1], salt))
                    .returning(users.c.id)
                )
        except IntegrityError:
            return JSONResponse({"error": "that username is taken"}, status_code=409)
        request.session["user_id"] = row.scalar_one()
        return JSONResponse({"user": given[0]}, status_code=201)

    async def login(request: Request) -> JSONResponse:
        given = _credentials(await _form(request))
        if given is None:
            return JSONResponse({"error": "wrong username or password"}, status_code=401)
        async with engine.connect() as db:
            row = (await db.execute(select(users).where(users.c.name == given[0]))).one_or_none()
        if row is None or not hmac.compare_digest(_hash(given[1], row.salt), row.password_hash):
            return JSONResponse({"error": "wrong username or password"}, status_code=401)
        cast(_Session, request.session).regenerate()  # a new session id at login: no fixation
        request.session["user_id"] = row.id
        return JSONResponse({"user": row.name})

    async def logout(request: Request) -> JSONResponse:
        cast(_Session, request.session).invalidate()
        return JSONResponse({"user": None})

    async def list_notes(request: Request) -> JSONResponse:
        user = _user_id(request)
        if user is None:
            return _unauthorized()
        async with engine.connect() as db:
            rows = await db.execute(
                select(notes.c.id, read_column.label("text"))
                .where(notes.c.user_id == user)
                .order_by(notes.c.id.desc())
                .limit(20)
            )
            total = (
                await db.execute(select(func.count()).where(notes.c.user_id == user))
            ).scalar_one()
        return JSONResponse(
            {"notes": [{"id": r.id, "text": r.text} for r in rows], "total": total},
            headers={"X-Release": RELEASE},
        )

    async def add_note(request: Request) -> JSONResponse:
        user = _user_id(request)
        if user is None:
            return _unauthorized()
        text = (await _form(request)).get("text", "").strip()
        if not 1 <= len(text) <= MAX_NOTE:
            return JSONResponse({"error": f"a note is 1 to {MAX_NOTE} characters"}, status_code=400)
        async with engine.begin() as db:
            row = await db.execute(
                insert(notes)
                .values(user_id=user, **dict.fromkeys(writes, text))
                .returning(notes.c.id)
            )
        return JSONResponse({"id": row.scalar_one(), "text": text}, status_code=201)

    return Starlette(
        routes=[
            Route("/register", register, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/notes", list_notes),
            Route("/notes", add_note, methods=["POST"]),
        ]
    )


def create_app() -> zerodown.ASGIMiddleware:
    """The app, from ``DATABASE_URL``, ``REDIS_URL`` and ``ZERODOWN_SESSION_SECRETS``."""
    engine = create_async_engine(
        sqlalchemy_url(os.environ["DATABASE_URL"]), pool_size=5, pool_pre_ping=True
    )
    health = zerodown.get_health()
    health.add(postgres(engine))
    # Ready only on a schema this release's migrations know.
    health.add(migrations_applied(engine, alembic=ALEMBIC_INI))
    health.add(redis(os.environ["REDIS_URL"]))
    app = make_app(engine, os.environ.get("NOTES_COLUMNS", "text"))
    sessions = SessionMiddleware(app, store=RedisStore(os.environ["REDIS_URL"]))
    return zerodown.ASGIMiddleware(sessions)
