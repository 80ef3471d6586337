"""PostgreSQL's SQLSTATE of an error, whichever driver raised it and however it was wrapped."""

from __future__ import annotations

UNDEFINED_TABLE = "42P01"
LOCK_NOT_AVAILABLE = "55P03"


def sqlstate(error: BaseException) -> str | None:
    """The code of ``error`` from psycopg (``sqlstate``), psycopg2 (``pgcode``) or asyncpg
    (``sqlstate``), through SQLAlchemy's ``orig`` and any ``__cause__`` chain."""
    seen: BaseException | None = error
    while seen is not None:
        for source in (seen, getattr(seen, "orig", None)):
            code = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
            if isinstance(code, str):
                return code
        seen = seen.__cause__
    return None
