"""Backfill notes.body from notes.text, for the release that reads body.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


#: Row locks only, a batch at a time: readers never wait, a writer of a row at most a batch.
BATCH = (
    "UPDATE notes SET body = text WHERE id IN "
    "(SELECT id FROM notes WHERE body IS NULL LIMIT 5000 FOR UPDATE SKIP LOCKED)"
)


def upgrade() -> None:
    if op.get_context().as_sql:
        # Offline (for the linter and for review) one statement stands for the loop.
        op.execute("UPDATE notes SET body = text WHERE body IS NULL")
        return
    bind = op.get_bind()
    while bind.execute(sa.text(BATCH)).rowcount:
        pass
