"""The rehearsal's database: the migration's steps, and what PostgreSQL saw while they ran.

Two sources, because neither sees everything. A sampler reads ``pg_stat_activity`` and
``pg_locks`` about every 100 ms: which statement each session runs, the locks the
migration holds, who waits behind whom, and each table's ``relfilenode`` (a new one is a
rewrite). PostgreSQL's own ``jsonlog`` has what is too short for a sample: every error with
its SQLSTATE and ``application_name``, every DDL statement with its time, and every lock
wait longer than ``deadlock_timeout`` with how long it took. The app does not have to
cooperate: each instance connects as its own ``application_name`` (``PGAPPNAME``).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Seconds between samples of pg_stat_activity and pg_locks.
SAMPLE_INTERVAL = 0.1
#: How a step's sessions are named in PostgreSQL.
STEP_PREFIX = "zerodown-"
#: Not a step's name: its queries are not the migration's.
MONITOR_NAME = "zerodown monitor"
#: Seconds a --setup, --migrate or --contract command may take.
STEP_TIMEOUT = 900.0
_ACTIVITY = """
SELECT a.pid, COALESCE(NULLIF(a.application_name, ''), leader.application_name, ''),
       a.state, left(a.query, 400), a.wait_event_type,
       extract(epoch FROM a.query_start)::float8, pg_blocking_pids(a.pid),
       (SELECT array_agg(l.mode || ' on ' || c.relname ORDER BY c.relname)
          FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted
           AND c.relnamespace NOT IN ('pg_catalog'::regnamespace,
                                      'information_schema'::regnamespace))
  FROM pg_stat_activity a LEFT JOIN pg_stat_activity leader ON leader.pid = a.leader_pid
 WHERE a.backend_type IN ('client backend', 'parallel worker')
   AND a.pid <> pg_backend_pid() AND a.datname = current_database()
"""
_RELATIONS = """
SELECT c.oid::int8, c.relname, c.relfilenode::int8 FROM pg_class c
 WHERE c.relkind IN ('r', 'p', 'i') AND c.relnamespace = 'public'::regnamespace
"""


@dataclass(frozen=True, slots=True)
class Step:
    """A command of the migration's: ``setup``, ``migrate`` or ``contract``."""

    name: str
    command: str
    started: float
    ended: float
    returncode: int
    output: str

    @property
    def failed(self) -> bool:
        return self.returncode != 0


class StepFailed(RuntimeError):
    """A step's command exited non-zero: the rehearsal cannot go on without it."""


def run_step(name: str, command: str, env: Mapping[str, str], cwd: Path, log_dir: Path) -> Step:
    """Run ``command`` through the shell as its own ``application_name``; raise
    :class:`StepFailed` with its output when it fails."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        completed = subprocess.run(
            command,
            shell=True,
            env={**env, "PGAPPNAME": STEP_PREFIX + name},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        output, status = completed.stdout + completed.stderr, completed.returncode
    except subprocess.TimeoutExpired as error:
        output, status = f"{error.output or ''}\ntimed out after {STEP_TIMEOUT:g}s", -1
    (log_dir / f"{name}.log").write_text(output)
    step = Step(name, command, started, time.time(), status, output)
    if step.failed:
        raise StepFailed(
            f"--{name} {command!r} exited with status {status}; its output:\n{output[-4000:]}"
        )
    return step


@dataclass(slots=True)
class _Episode:
    """One statement of one session, seen in consecutive samples."""

    pid: int
    application_name: str
    query: str
    started: float
    last_seen: float
    waited: bool = False
    blockers: set[int] = field(default_factory=set)
    locks: set[str] = field(default_factory=set)


class DatabaseWatch:
    """Samples the database in a thread from :meth:`start` to :meth:`stop`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.episodes: dict[tuple[int, float], _Episode] = {}
        self.names_by_pid: dict[int, str] = {}
        self.relations: dict[int, str] = {}
        self.rewrites: list[tuple[float, str]] = []
        self.samples = 0
        self.problem: str | None = None
        self._filenodes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zerodown-pg-watch", daemon=True)

    def start(self) -> DatabaseWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True, application_name=MONITOR_NAME) as db:
                while not self._stop.wait(SAMPLE_INTERVAL):
                    self._sample(db)
        except psycopg.Error as error:
            # The rehearsal goes on without samples; the report says so.
            self.problem = f"sampling PostgreSQL stopped: {error}".strip()

    def _sample(self, db: Any) -> None:
        now = time.time()
        for pid, name, state, query, wait, query_start, blockers, locks in db.execute(_ACTIVITY):
            self.names_by_pid[pid] = name
            if state != "active" or query_start is None:
                continue
            key = (pid, query_start)
            episode = self.episodes.get(key)
            if episode is None:
                episode = self.episodes[key] = _Episode(pid, name, query, query_start, now)
            episode.last_seen = now
            if wait == "Lock":
                episode.waited = True
                episode.blockers.update(blockers or ())
            episode.locks.update(locks or ())
        for oid, name, filenode in db.execute(_RELATIONS):
            self.relations[oid] = name
            before = self._filenodes.get(name)
            if before is not None and before != filenode:
                self.rewrites.append((now, name))
            self._filenodes[name] = filenode
        self.samples += 1


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: float
    pid: int
    severity: str
    application_name: str
    message: str
    state_code: str
    statement: str
    detail: str


def read_log(path: Path) -> list[LogEntry]:
    """PostgreSQL's jsonlog, one object a line; lines cut short by a stop are skipped."""
    entries = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
            at = datetime.strptime(entry["timestamp"], "%Y-%m-%d %H:%M:%S.%f %Z")
        except (ValueError, KeyError):
            continue
        entries.append(
            LogEntry(
                at=at.replace(tzinfo=UTC).timestamp(),
                pid=int(entry.get("pid", 0)),
                severity=entry.get("error_severity", ""),
                application_name=entry.get("application_name", ""),
                message=entry.get("message", ""),
                state_code=entry.get("state_code", ""),
                statement=entry.get("statement", ""),
                detail=entry.get("detail", ""),
            )
        )
    return entries


@dataclass(frozen=True, slots=True)
class LockWait:
    """A session that waited for a lock: who, how long, and behind whom."""

    at: float
    seconds: float
    pid: int
    application_name: str
    statement: str
    blocked_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatabaseError:
    """Errors PostgreSQL logged for one release: one SQLSTATE and message."""

    release: str
    state_code: str
    message: str
    count: int
    first_at: float
    last_at: float


@dataclass(frozen=True, slots=True)
class StepStatement:
    """A statement of a step's that the samples saw running, with the locks it held."""

    at: float
    seconds: float
    step: str
    statement: str
    #: ``MODE on TABLE``, as pg_locks has them (``ShareLock on notes``).
    locks: tuple[str, ...]
    waited: bool
    #: Sessions of the app that waited behind it.
    blocked: int


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    """What the database saw during the rehearsal, tied to the releases and the steps."""

    url: str
    throwaway: bool
    steps: list[Step]
    #: DDL the steps ran, from PostgreSQL's log: (time, step, statement).
    statements: list[tuple[float, str, str]]
    errors: list[DatabaseError]
    lock_waits: list[LockWait]
    rewrites: list[tuple[float, str]]
    #: The steps' statements long enough to be sampled (about 100 ms or more).
    sampled: list[StepStatement]
    samples: int
    problems: list[str]

    @classmethod
    def build(
        cls,
        url: str,
        throwaway: bool,
        steps: list[Step],
        watch: DatabaseWatch | None,
        log: list[LogEntry],
        releases: Mapping[str, str],
    ) -> DatabaseReport:
        statements = [
            (entry.at, entry.application_name.removeprefix(STEP_PREFIX), _logged_statement(entry))
            for entry in log
            if entry.application_name.startswith(STEP_PREFIX)
            and entry.severity == "LOG"
            and _logged_statement(entry)
        ]
        grouped: dict[tuple[str, str, str], list[float]] = {}
        for entry in log:
            if entry.severity in ("ERROR", "FATAL") and entry.application_name in releases:
                key = (releases[entry.application_name], entry.state_code, entry.message)
                grouped.setdefault(key, []).append(entry.at)
        errors = [
            DatabaseError(release, code, message, len(times), min(times), max(times))
            for (release, code, message), times in sorted(grouped.items())
        ]
        waits = _lock_waits(log, watch)
        if watch is not None:
            waits += _sampled_waits(watch, waits)
        problems = [] if watch is None or watch.problem is None else [watch.problem]
        sampled = [] if watch is None else _step_statements(watch, waits, releases)
        return cls(
            url=url,
            throwaway=throwaway,
            steps=steps,
            statements=statements,
            errors=errors,
            lock_waits=sorted(waits, key=lambda wait: wait.at),
            rewrites=[] if watch is None else list(watch.rewrites),
            sampled=sampled,
            samples=0 if watch is None else watch.samples,
            problems=problems,
        )

    def app_waits(self, releases: Mapping[str, str]) -> list[LockWait]:
        """Lock waits of the app's own sessions: the requests that queued."""
        return [wait for wait in self.lock_waits if wait.application_name in releases]

    def cause_before(self, moment: float) -> tuple[float, str, str] | None:
        """The last statement a step ran before ``moment``: what an error follows from."""
        earlier = [statement for statement in self.statements if statement[0] <= moment + 0.05]
        return earlier[-1] if earlier else None


def _step_statements(
    watch: DatabaseWatch, waits: list[LockWait], releases: Mapping[str, str]
) -> list[StepStatement]:
    """The steps' statements as the samples saw them, a parallel build's workers merged
    into their leader's statement."""
    merged: dict[tuple[str, str, float], list[_Episode]] = {}
    for episode in watch.episodes.values():
        if episode.application_name.startswith(STEP_PREFIX):
            key = (episode.application_name, episode.query, round(episode.started, 1))
            merged.setdefault(key, []).append(episode)
    found = []
    for (name, query, _), episodes in merged.items():
        started = min(episode.started for episode in episodes)
        ended = max(episode.last_seen for episode in episodes)
        blocked = {
            wait.pid
            for wait in waits
            if wait.application_name in releases
            and name in wait.blocked_by
            and started - 0.2 <= wait.at <= ended
        }
        found.append(
            StepStatement(
                at=started,
                seconds=ended - started,
                step=name.removeprefix(STEP_PREFIX),
                statement=query,
                locks=tuple(sorted(set().union(*(episode.locks for episode in episodes)))),
                waited=any(episode.waited for episode in episodes),
                blocked=len(blocked),
            )
        )
    return sorted(found, key=lambda statement: statement.at)


def _logged_statement(entry: LogEntry) -> str:
    """The SQL of a ``statement:`` (simple protocol) or ``execute ...:`` (extended) line."""
    message = entry.message
    if message.startswith("statement: "):
        return message.removeprefix("statement: ").strip()
    if message.startswith("execute ") and ": " in message:
        return message.partition(": ")[2].strip()
    return ""


def _lock_waits(log: list[LogEntry], watch: DatabaseWatch | None) -> list[LockWait]:
    """Waits PostgreSQL logged as ``acquired ... after N ms``, with the statement the
    samples saw that session run then."""
    names = {} if watch is None else watch.names_by_pid
    waits = []
    #: "still waiting" lines name the holders; the "acquired" line after them does not.
    holders: dict[int, str] = {}
    for entry in log:
        message = entry.message
        if " still waiting for " in message:
            holders[entry.pid] = entry.detail
        if " acquired " not in message:
            continue
        _, _, tail = message.rpartition(" after ")
        try:
            seconds = float(tail.removesuffix(" ms")) / 1000
        except ValueError:
            continue
        waits.append(
            LockWait(
                at=entry.at - seconds,
                seconds=seconds,
                pid=entry.pid,
                application_name=entry.application_name,
                statement=entry.statement or _statement_at(watch, entry.pid, entry.at),
                blocked_by=_holders(holders.pop(entry.pid, entry.detail), names),
            )
        )
    return waits


def _statement_at(watch: DatabaseWatch | None, pid: int, moment: float) -> str:
    if watch is None:
        return ""
    for episode in watch.episodes.values():
        if episode.pid == pid and episode.started <= moment <= episode.last_seen + 1:
            return episode.query
    return ""


def _holders(detail: str, names: Mapping[int, str]) -> tuple[str, ...]:
    """``Process holding the lock: 123. Wait queue: ...`` -> the holders' names."""
    _, marker, rest = detail.partition("holding the lock: ")
    if not marker:
        return ()
    pids = [pid.strip() for pid in rest.partition(".")[0].split(",")]
    # A parallel index build's workers hold the lock too: one name for them all.
    holders = (names.get(int(pid), f"pid {pid}") for pid in pids if pid.isdigit())
    return tuple(dict.fromkeys(holders))


def _sampled_waits(watch: DatabaseWatch, logged: list[LockWait]) -> list[LockWait]:
    """Waits the samples saw but the log has no ``acquired`` line for (still waiting at the
    end, or cancelled by a lock or statement timeout)."""
    waits = []
    for episode in watch.episodes.values():
        if not episode.waited or any(
            wait.pid == episode.pid and episode.started - 0.5 <= wait.at <= episode.last_seen
            for wait in logged
        ):
            continue
        waits.append(
            LockWait(
                at=episode.started,
                seconds=episode.last_seen - episode.started,
                pid=episode.pid,
                application_name=episode.application_name,
                statement=episode.query,
                blocked_by=tuple(
                    sorted(watch.names_by_pid.get(pid, f"pid {pid}") for pid in episode.blockers)
                ),
            )
        )
    return waits
