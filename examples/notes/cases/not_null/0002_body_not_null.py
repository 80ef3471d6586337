"""notes.body, filled from text and required at once: release N, which never writes body,
can no longer insert a note.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notes", sa.Column("body", sa.Text, nullable=True))
    op.execute("UPDATE notes SET body = text")
    op.alter_column("notes", "body", nullable=False)
