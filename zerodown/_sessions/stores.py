"""Where sessions live: Redis for several processes, memory for one.

A store keeps one hash per session under its storage key. A save writes only the changed
fields, and refuses to write into a session that no longer exists unless it is new, so
that a logout is never undone by a slower request of the same user.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import ConfigurationError, StoreError, StoreUnavailable
from .._ratelimit import RateLimitedLog
from .._telemetry import telemetry
from .contract import Delete, Move, NoWrite, Save, SaveOutcome, SavePlan, SessionStore, size_of

logger = logging.getLogger("zerodown")

DEFAULT_TIMEOUT = 0.25
DEFAULT_PREFIX = "zerodown:session:"
#: Seconds a key that is not a session hash (another program's, or garbage) is kept for
#: inspection once a request met it; before that it may have had no expiry at all.
QUARANTINE = 3600
#: Fields a save writes or deletes per Redis command: Lua's unpack() takes at most a few
#: thousand values at once.
_BATCH = 200
_store_log = RateLimitedLog(logger)


class Incidents:
    """Logs a store outage once when it starts and once when it ends, and counts failures."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._failing = False
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        telemetry.store_failed(error)
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


# Reads a session and slides its expiry (unless ARGV[1] is 0), in one call (cheaper for
# the client than a pipeline of HGETALL and EXPIRE). A key of another type is no session:
# it gets at most ARGV[2] seconds more and the answer -1, so that its user gets a new
# session.
_LOAD = """
local fields = redis.pcall('HGETALL', KEYS[1])
if type(fields) == 'table' and fields.err then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 or ttl > tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  return -1
end
if #fields > 0 and tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return fields
"""

# Writes the changed fields only if the session still exists (or is new) and stays within
# max_size once written, then refreshes the expiry. ARGV: ttl, "1" when the session is new,
# max_size, the number of changed fields, the changed fields as name/value pairs, the batch
# size, then the names of removed fields. Returns 1 (written), 0 (gone: deleted meanwhile,
# or not a session hash) or 2 (too large).
_SAVE = """
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local stored = redis.pcall('HGETALL', KEYS[1])
if type(stored) == 'table' and stored.err then return 0 end
local changed = tonumber(ARGV[4])
local sizes = {}
for i = 1, #stored, 2 do sizes[stored[i]] = #stored[i] + #stored[i + 1] end
for i = 5, 4 + 2 * changed, 2 do sizes[ARGV[i]] = #ARGV[i] + #ARGV[i + 1] end
for i = 6 + 2 * changed, #ARGV do sizes[ARGV[i]] = nil end
local size = 0
for _, n in pairs(sizes) do size = size + n end
if size > tonumber(ARGV[3]) then return 2 end
local batch = tonumber(ARGV[5 + 2 * changed])
for i = 5, 4 + 2 * changed, 2 * batch do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 2 * batch - 1, 4 + 2 * changed)))
end
for i = 6 + 2 * changed, #ARGV, batch do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + batch - 1, #ARGV)))
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""
_SAVE_OUTCOMES = {0: SaveOutcome.GONE, 1: SaveOutcome.WRITTEN, 2: SaveOutcome.TOO_LARGE}


class RedisStore:
    """Sessions in Redis, through a redis-py client (asyncio for ASGI apps, sync for WSGI
    apps; Sentinel and Cluster clients too) or a ``redis://`` URL (both kinds, made when
    first needed).

    Every call is bounded by ``timeout`` (250 ms): a Redis that is down or stalled costs a
    request that long, then the middleware's outage policy applies. Clients made from a URL
    have that socket timeout and no retries; a sync client you pass keeps its own socket
    timeout, which should be as short.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.incidents = Incidents("the session store (Redis)")
        self._url = client if isinstance(client, str) else None
        self._async: Any = None
        self._sync: Any = None
        if self._url is None:
            if inspect.iscoroutinefunction(client.execute_command):
                self._async = client
            else:
                self._sync = client
        self._scripts: dict[tuple[int, str], Any] = {}

    def _client(self, *, asynchronous: bool) -> Any:
        client = self._async if asynchronous else self._sync
        if client is not None:
            return client
        if self._url is None:
            kind, other = ("an asyncio", "ASGI") if asynchronous else ("a sync", "WSGI")
            raise ConfigurationError(
                f"the session store was given a {'sync' if asynchronous else 'asyncio'} redis "
                f"client, but {other} apps need {kind} one: pass that, or a redis:// URL"
            )
        import redis
        import redis.asyncio

        module: Any = redis.asyncio if asynchronous else redis
        retry = (redis.asyncio.retry.Retry if asynchronous else redis.retry.Retry)(
            redis.backoff.NoBackoff(), 0
        )
        client = module.Redis.from_url(
            self._url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=retry,
        )
        if asynchronous:
            self._async = client
        else:
            self._sync = client
        return client

    def _script(self, client: Any, source: str) -> Any:
        script = self._scripts.get((id(client), source))
        if script is None:
            script = self._scripts[id(client), source] = client.register_script(source)
        return script

    # Each call is built once, by a function that returns what the client returns: an
    # awaitable from an asyncio client, the reply from a sync one.

    def _load_call(self, client: Any, key: str, ttl: int) -> Any:
        return self._script(client, _LOAD)(keys=[self.prefix + key], args=[ttl, QUARANTINE])

    def _apply_call(self, client: Any, plan: Delete | Move | Save, ttl: int) -> Any:
        if isinstance(plan, Delete):
            return client.delete(*(self.prefix + key for key in plan.keys))
        if isinstance(plan, Move):
            if size_of(plan.fields) > plan.max_size:
                return None
            # Two keys in two hash slots: not one transaction (Cluster), new before old.
            pipe = client.pipeline(transaction=False)
            if plan.fields:
                pipe.hset(self.prefix + plan.new_key, mapping=dict(plan.fields))
                pipe.expire(self.prefix + plan.new_key, ttl)
            pipe.delete(self.prefix + plan.old_key)
            return pipe.execute()
        pairs = [item for name_value in plan.changed.items() for item in name_value]
        argv: list[int | str | bytes] = [ttl, "1" if plan.new else "0", plan.max_size]
        argv += [len(plan.changed), *pairs, _BATCH, *plan.removed]
        return self._script(client, _SAVE)(keys=[self.prefix + plan.key], args=argv)

    @staticmethod
    def _outcome(plan: Delete | Move | Save, reply: Any) -> SaveOutcome:
        if isinstance(plan, Save):
            return _SAVE_OUTCOMES[int(reply)]
        if isinstance(plan, Move) and reply is None:
            return SaveOutcome.TOO_LARGE
        return SaveOutcome.WRITTEN

    def _fields(self, key: str, reply: Any) -> dict[str, bytes] | None:
        """The session's fields; None for none, and for what no release can use."""
        if reply == -1:
            _store_log.log(
                logging.WARNING,
                "not a hash",
                "zerodown: a session key holds another Redis type; its user gets a new "
                "session and the key expires within %ds (left for inspection: %s%s)",
                QUARANTINE,
                self.prefix,
                key,
            )
            return None
        if not reply:
            return None
        try:
            return {
                name.decode() if isinstance(name, bytes) else name: value
                for name, value in zip(reply[0::2], reply[1::2], strict=True)
            }
        except UnicodeDecodeError:
            _store_log.log(
                logging.WARNING,
                "field names",
                "zerodown: a stored session has field names that are not UTF-8; its user "
                "gets a new session (left untouched: %s%s)",
                self.prefix,
                key,
            )
            return None

    async def load(self, key: str, ttl: int) -> dict[str, bytes] | None:
        client = self._client(asynchronous=True)
        return self._fields(key, await self._bounded(self._load_call(client, key, ttl)))

    def load_sync(self, key: str, ttl: int) -> dict[str, bytes] | None:
        client = self._client(asynchronous=False)
        return self._fields(key, self._bounded_sync(lambda: self._load_call(client, key, ttl)))

    async def apply(self, plan: SavePlan, ttl: int) -> SaveOutcome:
        if isinstance(plan, NoWrite):
            return SaveOutcome.WRITTEN
        client = self._client(asynchronous=True)
        call = self._apply_call(client, plan, ttl)
        reply = None if call is None else await self._bounded(call)
        return self._outcome(plan, reply)

    def apply_sync(self, plan: SavePlan, ttl: int) -> SaveOutcome:
        if isinstance(plan, NoWrite):
            return SaveOutcome.WRITTEN
        client = self._client(asynchronous=False)
        reply = self._bounded_sync(lambda: self._apply_call(client, plan, ttl))
        return self._outcome(plan, reply)

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                result = await call
        except Exception as error:
            raise self._failure(error) from error
        self.incidents.succeeded()
        return result

    def _bounded_sync(self, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except Exception as error:
            raise self._failure(error) from error
        self.incidents.succeeded()
        return result

    def _failure(self, error: Exception) -> StoreError:
        """What a failed call was: an outage (the store did not answer, or cannot for the
        moment), or a refusal that retrying would meet again."""
        if isinstance(error, ConfigurationError):
            raise error
        text = f"{type(error).__name__}: {error}"
        if _is_refusal(error):
            _store_log.log(
                logging.ERROR, "refused", "zerodown: Redis refused a session call: %s", text
            )
            telemetry.store_failed(error)
            return StoreError(text)
        self.incidents.failed(error)
        return StoreUnavailable(text)


def _is_refusal(error: Exception) -> bool:
    """A Redis error reply that is not about Redis being unable to serve for a moment."""
    try:
        from redis import exceptions
    except ImportError:  # pragma: no cover - a RedisStore has a redis-py client
        return False
    passing = (
        exceptions.ClusterDownError,
        exceptions.ReadOnlyError,
        exceptions.TryAgainError,
        exceptions.OutOfMemoryError,
    )
    return (
        isinstance(error, exceptions.ResponseError)
        and not isinstance(error, passing)
        and not str(error).startswith("BUSY")
    )


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
        return self.load_sync(key, ttl)

    def load_sync(self, key: str, ttl: int) -> dict[str, bytes] | None:
        with self._lock:
            fields = self._live(key)
            if fields is None:
                return None
            if ttl > 0:
                self._put(key, fields, ttl)
            return dict(fields)

    async def apply(self, plan: SavePlan, ttl: int) -> SaveOutcome:
        return self.apply_sync(plan, ttl)

    def apply_sync(self, plan: SavePlan, ttl: int) -> SaveOutcome:
        with self._lock:
            if isinstance(plan, Delete):
                for key in plan.keys:
                    self._sessions.pop(key, None)
            elif isinstance(plan, Move):
                if size_of(plan.fields) > plan.max_size:
                    return SaveOutcome.TOO_LARGE
                self._sessions.pop(plan.old_key, None)
                self._put(plan.new_key, dict(plan.fields), ttl)
            elif isinstance(plan, Save):
                fields = self._live(plan.key)
                if fields is None and not plan.new:
                    return SaveOutcome.GONE
                fields = {**(fields or {}), **plan.changed}
                for name in plan.removed:
                    fields.pop(name, None)
                if size_of(fields) > plan.max_size:
                    return SaveOutcome.TOO_LARGE
                self._put(plan.key, fields, ttl)
            return SaveOutcome.WRITTEN


def store_or_memory(store: SessionStore | None) -> SessionStore:
    """``store``, or a :class:`MemoryStore` for development when none was given."""
    if store is not None:
        return store
    logger.warning(
        "zerodown: sessions are kept in this process's memory (no store was given): other "
        "processes and restarts do not see them. Pass store=RedisStore(url) in production."
    )
    return MemoryStore()
