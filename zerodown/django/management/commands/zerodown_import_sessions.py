"""``manage.py zerodown_import_sessions --trusted``: copy the sessions of Django's cache
engine, which are pickled, into zerodown's store, once and offline.

Unpickling runs whatever code the pickled bytes name: anyone who could write to that
Redis could run code in this process. That is why zerodown never does it in the request
path, and why this command refuses to run without ``--trusted``: run it once, from an
operator's shell, against the store your own releases wrote, before the release on
zerodown's engine serves. Each session keeps its key (zerodown's engine accepts Django's
keys while its store holds them) and its remaining lifetime; a session with a value that
is not JSON data is left out, and its user logs in again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sessions.backends.cache import KEY_PREFIX
from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...._json_output import words_stream, write_json
from ..._keys import is_django_key
from ...sessions import engine

#: Characters of a Redis glob pattern that stand for something.
_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = (
        "Copy the sessions of Django's cache session engine (pickled, in Redis) into "
        "zerodown's store, once. Unpickles them: only with --trusted, against a store only "
        "your releases wrote."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--cache",
            help="the alias of the cache holding the sessions (default: SESSION_CACHE_ALIAS)",
        )
        parser.add_argument(
            "--trusted",
            action="store_true",
            help="confirm that only your own releases could write to that cache: this "
            "unpickles every session in it",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be copied, copy nothing"
        )
        parser.add_argument("--json", metavar="FILE", help="the counts as JSON (- for stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["trusted"]:
            raise CommandError(
                "this unpickles every session in the cache, which runs any code the stored "
                "bytes name; run it once, offline, against a store only your own releases "
                "wrote, with --trusted"
            )
        alias = options["cache"] or settings.SESSION_CACHE_ALIAS
        cache = caches[alias]
        client = _redis_client(alias)
        sessions = engine()
        prefix = cache.make_key(KEY_PREFIX)
        counts: Counter[str] = Counter()
        for raw_name in client.scan_iter(match=prefix.translate(_GLOB) + "*", count=500):
            session_key = raw_name.decode()[len(prefix) :]
            if not is_django_key(session_key):
                counts["not a session key"] += 1
                continue
            ttl = client.ttl(raw_name)
            data = cache.get(KEY_PREFIX + session_key)  # the unpickling
            if data is None or ttl == -2:
                counts["expired meanwhile"] += 1
                continue
            try:
                fields = sessions.fields(data)
            except TypeError:
                counts["a value that is not JSON data"] += 1
                continue
            if not options["dry_run"]:
                plan = sessions.creation(session_key, fields)
                sessions.store.apply_sync(plan, ttl if ttl > 0 else settings.SESSION_COOKIE_AGE)
            counts["copied"] += 1
        out = words_stream(options["json"])
        verb = "would copy" if options["dry_run"] else "copied"
        left_out = ", ".join(f"{n} {why}" for why, n in counts.items() if why != "copied")
        out.write(
            f"{verb} {counts['copied']} sessions from cache {alias!r} into zerodown's store"
            + (f"; left out: {left_out}" if left_out else "")
            + "\n"
        )
        if options["json"]:
            write_json({"cache": alias, "dry_run": options["dry_run"], **counts}, options["json"])


def _redis_client(alias: str) -> Any:
    """A client of the Redis behind the cache ``alias``, from its ``LOCATION``."""
    location = settings.CACHES[alias].get("LOCATION")
    first = location[0] if isinstance(location, list | tuple) else str(location or "")
    first = first.replace(";", ",").split(",")[0].strip()
    if urlsplit(first).scheme not in ("redis", "rediss", "unix"):
        raise CommandError(
            f"cache {alias!r} is not in Redis (LOCATION {location!r}); the sessions of a cache "
            "in one process's memory cannot be reached from here, and are lost at a deploy "
            "anyway"
        )
    import redis

    return redis.Redis.from_url(first)
