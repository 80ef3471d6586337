"""The index on notes.text, built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("notes_text", "notes", ["text"], postgresql_concurrently=True)
