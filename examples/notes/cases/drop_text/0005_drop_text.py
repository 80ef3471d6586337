"""Contract: drop notes.text, which no running release reads or writes.

zerodown: contract (run once the release that writes only body is the only one serving)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_column("notes", "text")
