"""The notes app's tables, as its Alembic migrations create them.

``notes.body`` exists only after the expand-contract cases' migrations
(``examples/notes/cases/``); a release names only the columns it uses.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("salt", LargeBinary(16), nullable=False),
    Column("password_hash", LargeBinary(64), nullable=False),
)

notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("text", Text, nullable=False),
    Column("body", Text, nullable=True),
)
