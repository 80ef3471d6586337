"""A throwaway PostgreSQL: ``initdb`` and ``postgres`` on a free loopback port, logging
what a rehearsal reads back.

Its log is PostgreSQL's ``jsonlog`` (one JSON object a line, with the SQLSTATE and the
``application_name`` of each error), with the app's failing statements
(``log_min_error_statement``), DDL with its time (``log_statement = ddl``) and lock waits
(``log_lock_waits``, after ``deadlock_timeout``, lowered to 100 ms for that).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .procs import LOOPBACK, ManagedProcess, free_port, start_process, wait_for_port

#: What ``--env`` values may name, filled in from the rehearsal's database.
PLACEHOLDERS = ("database_url", "db_host", "db_port", "db_name", "db_user", "db_password")
USER = "postgres"
DATABASE = "postgres"
#: Server settings of a rehearsal's database: what the log must show, and no fsync.
SETTINGS = {
    "listen_addresses": LOOPBACK,
    "fsync": "off",
    "max_connections": "200",
    "logging_collector": "on",
    "log_destination": "jsonlog",
    "log_filename": "postgresql.log",
    "log_rotation_size": "0",
    "log_lock_waits": "on",
    "deadlock_timeout": "100ms",
    "log_min_error_statement": "error",
    "log_statement": "ddl",
    "log_timezone": "UTC",
}


@dataclass(frozen=True, slots=True)
class Database:
    """Where a database is, as the ``--env`` placeholders name its parts."""

    url: str

    def fill(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with each ``{placeholder}`` replaced; other braces (JSON) left alone."""
        values = self.placeholders()
        filled = {}
        for key, value in env.items():
            for name, part in values.items():
                value = value.replace("{" + name + "}", part)
            filled[key] = value
        return filled

    def placeholders(self) -> dict[str, str]:
        parts = urlsplit(self.url)
        return {
            "database_url": self.url,
            "db_host": parts.hostname or "",
            "db_port": str(parts.port or 5432),
            "db_name": parts.path.lstrip("/") or DATABASE,
            "db_user": parts.username or "",
            "db_password": parts.password or "",
        }


class ThrowawayPostgres:
    """A new cluster in its own directory, stopped (and removed) by :meth:`stop`.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
    user, in a directory of its own outside any private temp dir.
    """

    def __init__(self, process: ManagedProcess, root: Path, port: int) -> None:
        self.process = process
        self.root = root
        self.port = port
        self.database = Database(f"postgresql://{USER}@{LOOPBACK}:{port}/{DATABASE}")

    @property
    def log_path(self) -> Path:
        """The jsonlog file: PostgreSQL appends ``.json`` to ``log_filename``'s stem."""
        return self.root / "data" / "log" / "postgresql.json"

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> ThrowawayPostgres:
        bin_dir = postgres_bin()
        user = USER if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="zerodown-pg-"))
        if user is not None:
            shutil.chown(root, user)
        data = root / "data"
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=user,
        )
        port = free_port()
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root)]
        for name, value in {**SETTINGS, **(settings or {})}.items():
            argv += ["-c", f"{name}={value}"]
        process = start_process("postgres", argv, log_path=root / "postgres.out", user=user)
        server = cls(process, root, port)
        try:
            wait_for_port(process, port, timeout=30)
            server._wait_accepting(bin_dir)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_accepting(self, bin_dir: Path) -> None:
        ready = [str(bin_dir / "pg_isready"), "-h", LOOPBACK, "-p", str(self.port), "-t", "1"]
        deadline = time.monotonic() + 15
        while subprocess.run(ready, capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"PostgreSQL did not accept connections:\n{self.process.log_text()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        # SIGINT: PostgreSQL's fast shutdown, which rolls back what is open and exits.
        self.process.stop(2, timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


def add_database_options(
    group: argparse.ArgumentParser | argparse._ArgumentGroup, *, throwaway: str, yours: str
) -> None:
    """``--database postgres`` (a throwaway one) or ``--database-url URL`` (yours)."""
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--database", choices=("postgres",), help=throwaway)
    choice.add_argument("--database-url", metavar="URL", help=yours)


def postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if not candidates:
        raise FileNotFoundError("PostgreSQL's initdb is missing: run `bash scripts/zd setup`")
    return Path(candidates[-1]).parent


def _version_key(path: str) -> int:
    version = Path(path).parents[1].name
    return int(version) if version.isdigit() else 0
