"""Fixed-window counters shared by every process, each hit one atomic operation.

`hit(key, window)` adds one to `key`'s count and answers the count and when its window ends. A
window starts at the first hit after the previous one ended and lasts `window` seconds (fixed
windows: a burst straddling two windows may reach twice a limit, never more). Counting and reading
are one step, so a caller that refuses past a limit ("take a slot, then act") cannot be outrun by
parallel requests in other processes, as a read-then-write counter in per-process memory was.

Two stores, chosen by settings.LIMIT_COUNTERS (settings.py derives it from CACHE_URL):

- "database" (the default: nothing extra to run): the `limits_counter` table, one upsert per hit
  (INSERT ... ON CONFLICT DO UPDATE ... RETURNING, on SQLite >= 3.35 and PostgreSQL alike). A row
  whose window ended is reused by its key's next hit; rows of keys nobody hits again are pruned
  now and then (1 hit in PRUNE_ONE_IN) in small batches.
- "cache": Django's Redis cache (CACHE_URL=redis://...), one Lua script per hit (a hash holding
  the count and the window's end, expiring with the window).

Transactions (database store): a hit must commit on its own, at once. Outside an atomic block it
runs on the request's connection in autocommit: one statement, one short transaction. Inside one
(a view or service that counts while it writes):
- PostgreSQL: the hit runs on a connection of its own (per thread, autocommit), so the counter's
  row lock is released when the statement ends instead of when the request commits (which would
  queue every other process's hit on that key behind this request, and could deadlock with the
  request's other locks), and a rolled-back request still counts.
- SQLite: the hit joins the open transaction. SQLite has one writer and Herald's transactions
  take the write lock when they begin (IMMEDIATE), so no other process can interleave anyway; a
  second connection would only wait on this one's own lock until the busy timeout. The hit then
  commits, or rolls back, with the transaction. Pruning waits for a hit outside a transaction.
Django's test-case transactions do not count as "inside": there the hit joins the test's
transaction and is rolled back with it, like every other row the test wrote.

Times are Unix seconds from the web processes' clocks (kept in step by NTP on Lambda and servers).
A store that cannot be reached raises: a limit fails closed, as the rest of the request would.
"""
import hashlib
import random
import sqlite3
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished
from django.db import connections

# About one hit in this many also deletes (up to PRUNE_BATCH) rows whose window has ended.
PRUNE_ONE_IN = 200
PRUNE_BATCH = 500
MAX_KEY_LENGTH = 120  # longer keys (or keys with spaces or control characters) are hashed


@dataclass(frozen=True)
class Hit:
    """What one hit saw: the count including this hit, and when the window ends (Unix seconds)."""

    count: int
    ends: float

    def wait(self, now: float | None = None) -> float:
        """Seconds until the window ends (0 once it has)."""
        return max(0.0, self.ends - (time.time() if now is None else now))


def hit(key: str, window: float, *, now: float | None = None) -> Hit:
    """Count one hit of `key` in a fixed window of `window` seconds; atomic across processes."""
    return store().hit(_normal(key), float(window), time.time() if now is None else now)


def release(key: str, taken: Hit) -> None:
    """Give back a hit taken by `hit` (an attempt that turned out not to count), if its window is
    still the current one: a release never lends a slot to a later window."""
    store().release(_normal(key), taken)


def clear(key: str) -> None:
    """Forget `key`'s count (a successful log-in clears its account's failures)."""
    store().clear(_normal(key))


def prune(*, now: float | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete up to `batch` counters whose window has ended; how many went (the cache store's
    keys expire by themselves: 0)."""
    return store().prune(time.time() if now is None else now, batch)


def store():
    """The store settings.LIMIT_COUNTERS names; the one place the choice is made."""
    name = getattr(settings, "LIMIT_COUNTERS", "database")
    try:
        return _STORES[name]
    except KeyError:
        raise ImproperlyConfigured(f"LIMIT_COUNTERS must be one of {', '.join(_STORES)}, not {name!r}") from None


def _normal(key: str) -> str:
    if len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key:
        return key
    return f"{key[:40].encode('ascii', 'replace').decode()}#{hashlib.sha256(key.encode()).hexdigest()[:40]}".replace(" ", "_")


# --- the database store -------------------------------------------------------------------------

_HIT_SQL = (
    'INSERT INTO limits_counter ("key", hits, window_ends) VALUES (%s, 1, %s) '
    'ON CONFLICT ("key") DO UPDATE SET '
    "hits = CASE WHEN limits_counter.window_ends <= %s THEN 1 ELSE limits_counter.hits + 1 END, "
    "window_ends = CASE WHEN limits_counter.window_ends <= %s THEN excluded.window_ends "
    "ELSE limits_counter.window_ends END "
    "RETURNING hits, window_ends"
)
_RELEASE_SQL = 'UPDATE limits_counter SET hits = hits - 1 WHERE "key" = %s AND window_ends = %s AND hits > 0'
_CLEAR_SQL = 'DELETE FROM limits_counter WHERE "key" = %s'
# SKIP LOCKED (PostgreSQL): two pruners, or a pruner and a hit, never wait on each other's rows.
_PRUNE_SQL = (
    'DELETE FROM limits_counter WHERE "key" IN (SELECT "key" FROM limits_counter '
    "WHERE window_ends <= %s ORDER BY window_ends LIMIT %s{lock})"
)


class DatabaseCounters:
    """Counters in the `limits_counter` table (limits.models.Counter); see the module docstring."""

    alias = "default"

    def __init__(self):
        self._own = threading.local()
        self._opened = []  # every thread's own connection, so close_all() can reach them
        self._opened_lock = threading.Lock()

    def hit(self, key, window, now):
        connection, alone = self._connection()
        with connection.cursor() as cursor:
            cursor.execute(_HIT_SQL, [key, now + window, now, now])
            (count, ends), = cursor.fetchall()  # read to the end: SQLite finishes the statement then
        if alone and random.randrange(PRUNE_ONE_IN) == 0:
            self.prune(now, PRUNE_BATCH)
        return Hit(int(count), float(ends))

    def release(self, key, taken):
        connection, _ = self._connection()
        with connection.cursor() as cursor:
            cursor.execute(_RELEASE_SQL, [key, taken.ends])

    def clear(self, key):
        connection, _ = self._connection()
        with connection.cursor() as cursor:
            cursor.execute(_CLEAR_SQL, [key])

    def prune(self, now, batch):
        connection, alone = self._connection()
        if not alone:
            return 0
        lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
        with connection.cursor() as cursor:
            cursor.execute(_PRUNE_SQL.format(lock=lock), [now, batch])
            return max(cursor.rowcount, 0)

    def _connection(self):
        """(connection, commits at once): the request's connection unless it is inside a
        transaction of the application's own; then PostgreSQL's own connection, or SQLite's
        open transaction (see the module docstring)."""
        connection = connections[self.alias]
        if connection.vendor == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
            raise ImproperlyConfigured(f"limit counters need SQLite >= 3.35 (upsert with RETURNING), not {sqlite3.sqlite_version}")
        if not _in_transaction(connection):
            return connection, True
        if connection.vendor == "sqlite":
            return connection, False
        own = getattr(self._own, "connection", None)
        if own is None:
            own = self._own.connection = connections.create_connection(self.alias)
            with self._opened_lock:
                self._opened.append(own)
        return own, True

    def close(self):
        """Close this thread's own connection, if it opened one."""
        own = getattr(self._own, "connection", None)
        if own is not None:
            own.close()
            self._own.connection = None

    def close_all(self):
        """Close every thread's own connection (before a test database is dropped, say)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for own in opened:
            own.close()
        self._own = threading.local()

    def close_if_done(self, **kwargs):
        own = getattr(self._own, "connection", None)
        if own is not None:
            own.close_if_unusable_or_obsolete()


def _in_transaction(connection) -> bool:
    """Inside a transaction the application opened (not just a test case's wrapping one)."""
    if connection.in_atomic_block:
        return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)
    return not connection.get_autocommit() if connection.connection is not None else False


# --- the cache store (Redis) --------------------------------------------------------------------

# KEYS[1]: the counter; ARGV: now, window, now + window (integer milliseconds).
_HIT_LUA = """
local ends = tonumber(redis.call('HGET', KEYS[1], 'e'))
if ends == nil or ends <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'n', 1, 'e', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[3])}
end
return {redis.call('HINCRBY', KEYS[1], 'n', 1), ends}
"""
# ARGV[1]: the window's end the released hit saw.
_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] and tonumber(redis.call('HGET', KEYS[1], 'n')) > 0 then
  return redis.call('HINCRBY', KEYS[1], 'n', -1)
end
return -1
"""


class CacheCounters:
    """Counters in Django's Redis cache (CACHES["default"], from CACHE_URL); a key expires with
    its window, in Redis's own time, so nothing needs pruning."""

    alias = "default"

    def _cache(self):
        from django.core.cache.backends.redis import RedisCache

        cache = caches[self.alias]
        if not isinstance(cache, RedisCache):
            raise ImproperlyConfigured("LIMIT_COUNTERS='cache' needs the Redis cache: set CACHE_URL=redis://...")
        return cache

    def _run(self, script, key, *args):
        cache = self._cache()
        client = cache._cache.get_client(write=True)
        return client.eval(script, 1, cache.make_key(key), *args)

    def hit(self, key, window, now):
        now_ms, window_ms = int(now * 1000), max(1, int(window * 1000))
        count, ends_ms = self._run(_HIT_LUA, key, now_ms, window_ms, now_ms + window_ms)
        return Hit(int(count), int(ends_ms) / 1000)

    def release(self, key, taken):
        self._run(_RELEASE_LUA, key, round(taken.ends * 1000))

    def clear(self, key):
        self._cache().delete(key)

    def prune(self, now, batch):
        return 0


_database = DatabaseCounters()
_STORES = {"database": _database, "cache": CacheCounters()}
request_finished.connect(_database.close_if_done, dispatch_uid="limits.counters.close_if_done")
