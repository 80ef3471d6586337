"""Where sessions live: Redis for several processes, memory for one.

A store keeps one hash per session under its storage key. ``save`` writes only the changed
fields, and refuses to write into a session that no longer exists unless it is new, so
that a logout is never undone by a slower request of the same user.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Set
from typing import Any, Protocol

from ._errors import ZerodownError

logger = logging.getLogger("zerodown")

DEFAULT_TIMEOUT = 0.25
DEFAULT_PREFIX = "zerodown:session:"


class StoreUnavailable(ZerodownError):
    """The session store did not answer in time or failed; nothing was written."""


class SessionStore(Protocol):
    async def load(self, key: str, ttl: int) -> dict[str, bytes] | None:
        """The fields of the session at ``key`` (refreshing its expiry), or None."""

    async def save(
        self,
        key: str,
        ttl: int,
        changed: Mapping[str, bytes],
        removed: Set[str],
        *,
        new: bool,
    ) -> bool:
        """Write the changes; False when the session was deleted meanwhile (not ``new``)."""

    async def move(self, old_key: str, new_key: str, fields: Mapping[str, bytes], ttl: int) -> None:
        """Store ``fields`` under ``new_key`` and delete ``old_key``, at once."""

    async def delete(self, key: str) -> None: ...


class Incidents:
    """Logs a store outage once when it starts and once when it ends, and counts failures."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._failing = False
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            logger.warning(
                "zerodown: %s unavailable (%s: %s); sessions follow the outage policy until "
                "it answers again",
                self._what,
                type(error).__name__,
                error,
            )

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning(
                "zerodown: %s answers again (%d failed calls)", self._what, self.failures
            )


# Writes the changed fields only if the session still exists (or is new), then refreshes
# the expiry. ARGV: ttl, "1" when the session is new, the number of changed fields, the
# changed fields as name/value pairs, then the names of removed fields.
_SAVE = """
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local changed = tonumber(ARGV[3])
if changed > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * changed)) end
if #ARGV > 3 + 2 * changed then redis.call('HDEL', KEYS[1], unpack(ARGV, 4 + 2 * changed)) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""


class RedisStore:
    """Sessions in Redis, through a redis-py asyncio client or a ``redis://`` URL.

    Every call is bounded by ``timeout`` (250 ms): a Redis that is down or stalled costs a
    request that long, then the middleware's outage policy applies. A client made from a
    URL has the same socket timeouts and no retries; a client you pass keeps its own
    settings, within the bound.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        import redis.asyncio as redis_asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        if isinstance(client, str):
            client = redis_asyncio.Redis.from_url(
                client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self.incidents = Incidents("the session store (Redis)")
        self._save = client.register_script(_SAVE)

    async def _bounded(self, call: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                result = await call
        except Exception as error:
            self.incidents.failed(error)
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error
        self.incidents.succeeded()
        return result

    async def load(self, key: str, ttl: int) -> dict[str, bytes] | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.prefix + key)
        pipe.expire(self.prefix + key, ttl)
        fields, _ = await self._bounded(pipe.execute())
        if not fields:
            return None
        return {name.decode() if isinstance(name, bytes) else name: v for name, v in fields.items()}

    async def save(
        self,
        key: str,
        ttl: int,
        changed: Mapping[str, bytes],
        removed: Set[str],
        *,
        new: bool,
    ) -> bool:
        pairs = [item for name_value in changed.items() for item in name_value]
        argv = [ttl, "1" if new else "0", len(changed), *pairs, *removed]
        written = await self._bounded(self._save(keys=[self.prefix + key], args=argv))
        return bool(written)

    async def move(self, old_key: str, new_key: str, fields: Mapping[str, bytes], ttl: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.prefix + old_key)
        if fields:
            pipe.hset(self.prefix + new_key, mapping=dict(fields))
            pipe.expire(self.prefix + new_key, ttl)
        await self._bounded(pipe.execute())

    async def delete(self, key: str) -> None:
        await self._bounded(self.client.delete(self.prefix + key))


class MemoryStore:
    """Sessions in this process's memory, at most ``max_sessions`` (least recently used go).

    For development, tests and single-process apps: another process, or a restart, sees
    none of them.
    """

    def __init__(self, *, max_sessions: int = 10_000) -> None:
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[dict[str, bytes], float]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str) -> dict[str, bytes] | None:
        entry = self._sessions.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._sessions[key]
            return None
        return entry[0]

    def _put(self, key: str, fields: dict[str, bytes], ttl: int) -> None:
        if not fields:
            self._sessions.pop(key, None)
            return
        self._sessions[key] = (fields, time.monotonic() + ttl)
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    async def load(self, key: str, ttl: int) -> dict[str, bytes] | None:
        with self._lock:
            fields = self._live(key)
            if fields is None:
                return None
            self._put(key, fields, ttl)
            return dict(fields)

    async def save(
        self,
        key: str,
        ttl: int,
        changed: Mapping[str, bytes],
        removed: Set[str],
        *,
        new: bool,
    ) -> bool:
        with self._lock:
            fields = self._live(key)
            if fields is None and not new:
                return False
            fields = dict(fields or {})
            fields.update(changed)
            for name in removed:
                fields.pop(name, None)
            self._put(key, fields, ttl)
            return True

    async def move(self, old_key: str, new_key: str, fields: Mapping[str, bytes], ttl: int) -> None:
        with self._lock:
            self._sessions.pop(old_key, None)
            self._put(new_key, dict(fields), ttl)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)
