"""Alembic's entry point for the notes app: the URL from DATABASE_URL, online only."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

from examples.notes.schema import metadata

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

# The app may use an async driver; migrations run on psycopg's sync one.
url = os.environ["DATABASE_URL"].replace("+asyncpg://", "+psycopg://", 1)
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
