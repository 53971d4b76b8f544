"""Follower fan-out: planned up front, chunked, durable on the database queue, idempotent."""
import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django_tasks_db.models import DBTaskResult

from feed import fanout, services
from feed.models import Follow, User
from notifier.models import Notification, NotificationState

from .conftest import DATABASE_TASKS
from .helpers import assert_count_exact, make_followers


@pytest.mark.django_db
def test_the_post_request_does_not_wait_for_followers(api, alice):
    """The POST's own queries are the same for 3 followers and for 600."""
    api.as_(alice)
    counts = []
    for total in (3, 600):
        Follow.objects.filter(followee=alice).delete()
        User.objects.filter(username__startswith="fan").delete()
        make_followers(alice, total)
        with CaptureQueriesContext(connection) as queries:
            assert api.post("/api/posts/", {"text": f"to {total}"}, format="json").status_code == 201
        counts.append(len(queries))
        assert not Notification.objects.filter(kind="new_post").exists()  # not yet: after commit
    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_chunk_bounds_cover_every_follower_once(alice, bob):
    make_followers(alice, 8)
    make_followers(bob, 2, prefix="other")  # someone else's followers are not in alice's ranges
    ids = list(Follow.objects.filter(followee=alice).order_by("pk").values_list("pk", flat=True))
    assert fanout.chunk_bounds(alice.pk, 3) == [(0, ids[2]), (ids[2], ids[5]), (ids[5], ids[7])]
    assert fanout.chunk_bounds(alice.pk, 4) == [(0, ids[3]), (ids[3], ids[7])]
    assert fanout.chunk_bounds(User.objects.get(username="other0").pk, 3) == []


@pytest.mark.django_db
def test_followers_are_notified_in_planned_chunks(alice, monkeypatch, on_commit):
    monkeypatch.setattr(fanout, "CHUNK_SIZE", 3)
    fans = make_followers(alice, 8)
    with on_commit():
        post = services.create_post(alice, "hello everyone")
    assert Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count() == 8
    assert_count_exact(*fans)


@pytest.mark.django_db
def test_no_chunk_runs_inside_another_even_inline(alice, monkeypatch, on_commit):
    """1,200 one-follower chunks on the immediate backend: a chain of chunks that each start the
    next would pass Python's recursion limit; planned chunks run one after another."""
    monkeypatch.setattr(fanout, "CHUNK_SIZE", 1)
    fans = make_followers(alice, 1200)
    with on_commit():
        post = services.create_post(alice, "to everyone, one by one")
    assert Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count() == 1200
    assert set(NotificationState.objects.filter(user__in=fans).values_list("unread_count", "last_seq")) == {(1, 1)}


@pytest.mark.django_db
def test_a_retried_chunk_creates_no_duplicates(alice, on_commit):
    fans = make_followers(alice, 5)
    with on_commit():
        post = services.create_post(alice, "once")
    [(after, upto)] = fanout.chunk_bounds(alice.pk)
    assert fanout.fan_out_chunk.call(post.pk, after, upto) == 0  # Lambda retried the same chunk
    assert fanout.plan_fanout.call(post.pk) == 1  # ... or the whole plan
    assert Notification.objects.filter(kind="new_post").count() == 5
    assert set(NotificationState.objects.filter(user__in=fans).values_list("unread_count", "last_seq")) == {(1, 1)}


@pytest.mark.django_db
def test_a_post_deleted_before_its_fanout_tells_nobody(alice):
    make_followers(alice, 2)
    post = services.create_post(alice, "gone")  # fan-out not run yet (no commit in this test)
    services.delete_post(alice, post.pk)
    assert fanout.plan_fanout.call(post.pk) == 0
    assert fanout.fan_out_chunk.call(post.pk, 0, 10**9) == 0
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_on_the_database_queue_the_task_exists_exactly_when_the_post_does(alice, settings):
    settings.TASKS = DATABASE_TASKS
    fans = make_followers(alice, 7)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_post(alice, "rolled back")
        raise RuntimeError("the request failed after the post was written")
    assert not DBTaskResult.objects.exists()

    post = services.create_post(alice, "committed")
    assert list(DBTaskResult.objects.values_list("task_path", "args_kwargs")) == [
        ("feed.fanout.plan_fanout", {"args": [post.pk], "kwargs": {}})
    ]
    assert not Notification.objects.filter(kind="new_post").exists()  # nothing runs in the request
    call_command("db_worker", batch=True, interval=0, startup_delay=False, verbosity=0)
    assert Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count() == 7
    assert_count_exact(*fans)
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}


@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_loses_a_race_tries_again(alice, monkeypatch, caplog, settings):
    """A deadlock or serialization failure is retried inside the task, in every backend."""
    settings.TASKS = DATABASE_TASKS  # queued, not run: the test runs the chunk itself
    fans = make_followers(alice, 3)
    post = services.create_post(alice, "contended")
    real = fanout.notifier.notify
    failures = []

    def deadlock_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            cause = type("DeadlockDetected", (Exception,), {"sqlstate": "40P01"})("deadlock detected")
            raise OperationalError("deadlock detected") from cause
        return real(*args, **kwargs)

    monkeypatch.setattr(fanout.notifier, "notify", deadlock_once)
    assert fanout.fan_out_chunk.call(post.pk, 0, 10**9) == 3
    assert failures == [1]
    assert "lost a race" in caplog.text
    assert_count_exact(*fans)


@pytest.mark.django_db
def test_a_failing_after_commit_enqueue_does_not_fail_the_request(api, alice, monkeypatch, caplog,
                                                                  django_capture_on_commit_callbacks):
    def broken(*args):
        raise RuntimeError("async invoke refused")

    monkeypatch.setattr(type(fanout.plan_fanout), "enqueue", broken)
    make_followers(alice, 2)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.as_(alice).post("/api/posts/", {"text": "still posted"}, format="json")
    assert r.status_code == 201
    assert any("after_commit(" in rec.getMessage() for rec in caplog.records)
