"""limits.counters, the shared store every limit counts in: fixed windows, atomic counting, giving
a slot back, pruning, and what a hit does inside a transaction. The database store runs on the
suite's database (SQLite, or PostgreSQL with DATABASE_URL); the cache store on Redis, database 15
(flushed around each test; skipped when no Redis answers on 127.0.0.1:6379).

Hits from many threads run on a file copy of the SQLite test database (test_races'
file_backed_sqlite): each thread has its own connection, as each process does in production.
"""
import threading

import pytest
from django.db import connection, connections, transaction

from limits import counters
from limits.models import Counter

from .test_races import file_backed_sqlite  # noqa: F401  (autouse: SQLite on a file for this module)

REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


def use_redis(settings):
    if not redis_answers():
        pytest.skip(f"no Redis at {REDIS_URL}")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    settings.LIMIT_COUNTERS = "cache"
    from django.core.cache import cache

    cache.clear()  # FLUSHDB of database 15: nothing else lives there


@pytest.fixture(params=["database", "redis"])
def store(request, settings, db):
    if request.param == "redis":
        use_redis(settings)
        yield "redis"
        from django.core.cache import cache

        cache.clear()
    else:
        settings.LIMIT_COUNTERS = "database"
        yield "database"


def test_hits_count_up_in_one_window(store):
    hits = [counters.hit("k", 60, now=1000.0) for _ in range(3)]
    assert [h.count for h in hits] == [1, 2, 3]
    assert {h.ends for h in hits} == {1060.0}
    assert counters.hit("k", 60, now=1059.5).count == 4  # still the same window
    assert counters.hit("other", 60, now=1000.0).count == 1  # keys count apart


def test_a_window_that_ended_starts_again_at_one(store):
    for _ in range(5):
        counters.hit("k", 60, now=1000.0)
    fresh = counters.hit("k", 60, now=1060.0)  # the window ends at 1060: this hit opens the next
    assert (fresh.count, fresh.ends) == (1, 1120.0)
    assert counters.hit("k", 60, now=1061.0).count == 2


def test_wait_is_what_is_left_of_the_window(store):
    h = counters.hit("k", 30, now=1000.0)
    assert h.wait(1010.0) == 20.0 and h.wait(2000.0) == 0.0


def test_release_gives_a_slot_back_in_its_own_window_only(store):
    first = counters.hit("k", 60, now=1000.0)
    counters.hit("k", 60, now=1000.0)
    counters.release("k", first)
    assert counters.hit("k", 60, now=1001.0).count == 2
    counters.hit("k", 60, now=1070.0)  # a new window (count 1)
    counters.release("k", first)  # from the old window: no effect on the new one
    assert counters.hit("k", 60, now=1071.0).count == 2


def test_clear_forgets_the_count(store):
    for _ in range(3):
        counters.hit("k", 60)
    counters.clear("k")
    assert counters.hit("k", 60).count == 1


def test_long_or_odd_keys_are_hashed_and_still_count_apart(store):
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    assert counters.hit(a, 60).count == 1 and counters.hit(b, 60).count == 1
    assert counters.hit(a, 60).count == 2
    assert counters.hit("10.0.0.1, 10.0.0.2\n", 60).count == 1


def test_redis_keys_expire_with_their_window(settings, db):
    use_redis(settings)
    from django.core.cache import cache

    counters.hit("k", 2.5)
    client = cache._cache.get_client(write=True)
    assert 0 < client.pttl(cache.make_key("k")) <= 2500
    cache.clear()


@pytest.mark.django_db
def test_prune_deletes_only_rows_whose_window_ended(settings):
    settings.LIMIT_COUNTERS = "database"
    for i in range(5):
        counters.hit(f"old{i}", 60, now=1000.0)
    counters.hit("live", 60, now=1050.0)
    assert counters.prune(now=1070.0, batch=3) == 3  # a small batch at a time
    assert counters.prune(now=1070.0) == 2
    assert list(Counter.objects.values_list("key", flat=True)) == ["live"]


@pytest.mark.django_db
def test_hits_now_and_then_prune_by_themselves(settings, monkeypatch):
    settings.LIMIT_COUNTERS = "database"
    counters.hit("old", 1, now=1000.0)
    monkeypatch.setattr(counters, "PRUNE_ONE_IN", 1)
    counters.hit("new", 60, now=2000.0)
    assert list(Counter.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("where", ["database", "redis"])
def test_parallel_hits_from_many_threads_each_get_their_own_count(settings, where):
    if where == "redis":
        use_redis(settings)
    else:
        settings.LIMIT_COUNTERS = "database"
    threads, per_thread = 8, 25
    seen, errors = [], []
    start = threading.Barrier(threads)

    def hammer():
        try:
            start.wait()
            for _ in range(per_thread):
                seen.append(counters.hit("shared", 60).count)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(repr(exc))
        finally:
            connections.close_all()

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not errors, errors[:3]
    assert sorted(seen) == list(range(1, threads * per_thread + 1))  # no count given twice, none lost


@pytest.mark.django_db(transaction=True)
def test_a_hit_inside_a_transaction(settings):
    """PostgreSQL: on its own connection, committed at once, holding no lock the transaction keeps
    (another thread hits the same key meanwhile). SQLite: part of the transaction (its one writer)."""
    settings.LIMIT_COUNTERS = "database"
    others = []
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            assert counters.hit("in-tx", 60).count == 1
            if connection.vendor == "postgresql":
                worker = threading.Thread(target=lambda: (others.append(counters.hit("in-tx", 60).count),
                                                          connections.close_all()))
                worker.start()
                worker.join(timeout=60)
                assert others == [2], "the other thread waited on the transaction's lock"
            raise RuntimeError("the request fails and rolls back")
        expected = 3 if connection.vendor == "postgresql" else 1  # SQLite's hit rolled back with it
        assert counters.hit("in-tx", 60).count == expected
    finally:
        counters._database.close()
