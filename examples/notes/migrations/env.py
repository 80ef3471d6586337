"""Alembic's entry point for the notes app: the URL from DATABASE_URL.

Migrations run under zerodown's ``lock_timeout`` and retry a lock timeout with backoff, so
that one never queues the app's queries behind it. Offline (``alembic upgrade --sql``, which
``zerodown migrations check`` reads) no database is needed.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

from examples.notes.app import sqlalchemy_url
from examples.notes.schema import metadata
from zerodown.migrations import run_migrations

# The cases' alembic.ini files (examples/notes/cases/) have no logging sections.
if context.config.config_file_name is not None and context.config.file_config.has_section(
    "loggers"
):
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    context.configure(dialect_name="postgresql", target_metadata=metadata, literal_binds=True)
    run_migrations(context)
else:
    engine = create_engine(sqlalchemy_url(os.environ["DATABASE_URL"]))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        run_migrations(context)
    engine.dispose()
