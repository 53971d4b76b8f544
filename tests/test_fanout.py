"""Follower fan-out off the request path: chunked, idempotent, and cheap for the POST itself."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import fanout, services
from feed.models import Follow, User
from notifier import background
from notifier.models import Notification, NotificationState

from .helpers import assert_count_exact


def make_followers(author, count):
    fans = User.objects.bulk_create([User(username=f"fan{i}") for i in range(count)])
    Follow.objects.bulk_create([Follow(follower=fan, followee=author) for fan in fans])
    return fans


@pytest.mark.django_db
def test_the_post_request_does_not_wait_for_followers(api, alice):
    """The POST's own queries are the same for 3 followers and for 600."""
    make_followers(alice, 3)
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
def test_followers_are_notified_in_chunks(alice, monkeypatch, on_commit, django_capture_on_commit_callbacks):
    monkeypatch.setattr(fanout, "CHUNK_SIZE", 3)
    fans = make_followers(alice, 8)
    calls = []
    real = fanout.notify_followers
    monkeypatch.setattr(fanout, "notify_followers", lambda *a: calls.append(a) or real(*a))
    with django_capture_on_commit_callbacks(execute=True):
        post = services.create_post(alice, "hello everyone")
    assert [n for _, n in calls] == [0, *sorted(Follow.objects.values_list("pk", flat=True))[2:8:3]]
    assert Notification.objects.filter(kind="new_post", post_ref=post.pk).count() == 8
    assert_count_exact(*fans)


@pytest.mark.django_db
def test_a_retried_chunk_creates_no_duplicates(alice, on_commit):
    fans = make_followers(alice, 5)
    with on_commit():
        post = services.create_post(alice, "once")
    assert fanout.notify_followers(post.pk, 0) == 5  # Lambda retried the same chunk
    assert Notification.objects.filter(kind="new_post").count() == 5
    assert set(NotificationState.objects.filter(user__in=fans).values_list("unread_count", "last_seq")) == {(1, 1)}


@pytest.mark.django_db
def test_a_post_deleted_before_its_fanout_tells_nobody(alice):
    make_followers(alice, 2)
    post = services.create_post(alice, "gone")  # fan-out not run yet (no commit in this test)
    services.delete_post(alice, post.pk)
    assert fanout.notify_followers(post.pk, 0) == 0
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_thread_pool_does_the_fanout_after_commit(alice, settings):
    settings.BACKGROUND_WORKERS = 2
    fans = make_followers(alice, 30)
    post = services.create_post(alice, "from a worker thread")
    assert background.wait(10)
    assert Notification.objects.filter(kind="new_post", post_ref=post.pk).count() == 30
    assert_count_exact(*fans)


@pytest.mark.django_db
def test_a_failing_after_commit_job_does_not_fail_the_request(api, alice, monkeypatch, caplog,
                                                              django_capture_on_commit_callbacks):
    def broken(*args):
        raise RuntimeError("async invoke refused")

    monkeypatch.setattr(background, "run", broken)
    make_followers(alice, 2)
    with django_capture_on_commit_callbacks(execute=True):
        r = api.as_(alice).post("/api/posts/", {"text": "still posted"}, format="json")
    assert r.status_code == 201
    assert any("after_commit(" in rec.getMessage() for rec in caplog.records)
