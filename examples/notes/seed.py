"""Seed the notes app's database with ZERODOWN_SEED_ROWS notes (default 10 000) of one
user, so that a migration meets a table of a realistic size.

    DATABASE_URL=... python -m examples.notes.seed

``zerodown rehearse --seed-rows N`` sets the variable for its ``--setup`` commands.
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

from examples.notes.app import sqlalchemy_url

DEFAULT_ROWS = 10_000


def main() -> None:
    rows = int(os.environ.get("ZERODOWN_SEED_ROWS") or DEFAULT_ROWS)
    engine = create_engine(sqlalchemy_url(os.environ["DATABASE_URL"]))
    with engine.begin() as db:
        user = db.execute(
            text(
                "INSERT INTO users (name, salt, password_hash) VALUES ('seed', '', '') "
                "ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id"
            )
        ).scalar_one()
        db.execute(
            text(
                "INSERT INTO notes (user_id, text) SELECT :user, 'seeded note ' || n "
                "|| repeat('x', 40) FROM generate_series(1, :rows) AS n"
            ),
            {"user": user, "rows": rows},
        )
        db.execute(text("ANALYZE notes"))
    engine.dispose()
    print(f"seeded {rows} notes")


if __name__ == "__main__":
    main()
