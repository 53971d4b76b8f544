"""Operator admin: retrying owed pushes, test pushes, and changelists that stay cheap on big tables."""
import json

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.paginator import Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import services
from feed.models import Comment, Follow, Like, Post, User
from notifier import admin as notifier_admin
from notifier.models import Notification, NotificationState, PendingPush
from notifier.push.publisher import PublishError
from notifier.topics import user_topic

from .helpers import assert_count_exact, push_of, state_of

pytestmark = pytest.mark.django_db

NOTIFICATIONS = "/admin/notifier/notification/"
PENDING = "/admin/notifier/pendingpush/"
STATES = "/admin/notifier/notificationstate/"
USERS = "/admin/feed/user/"


@pytest.fixture
def root(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def operator(client, root):
    client.force_login(root)
    return client


def comment_notification(author, commenter, memory_publisher, on_commit, fail=None):
    """A comment notification for `author`, its push made to fail with `fail` (None: delivered)."""
    post = services.create_post(author, "a post")
    memory_publisher.fail = fail
    with on_commit():
        services.add_comment(commenter, post.pk, "a comment")
    memory_publisher.fail = None
    memory_publisher.gate.breaker.reset()  # the next push is tried, whatever this one did
    return Notification.objects.filter(recipient=author, kind="comment").latest("pk")


@pytest.fixture
def owed(alice, bob, memory_publisher, on_commit):
    """Two notifications for alice whose pushes are owed: one pending (the broker was down), one
    failed (the broker refused it for good)."""
    pending = comment_notification(alice, bob, memory_publisher, on_commit, PublishError("connection refused"))
    failed = comment_notification(
        alice, bob, memory_publisher, on_commit, PublishError("HTTP 413: payload too large", permanent=True)
    )
    assert push_of(pending)[0] == "pending" and push_of(failed)[0] == "failed"
    memory_publisher.reset()
    return pending, failed


def action(client, url, name, ids, **extra):
    return client.post(url, {"action": name, "_selected_action": [str(i) for i in ids], **extra}, follow=True)


def counts(state) -> tuple:
    return state.unread_count, state.last_seq, state.read_seq


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Retry push --------------------------------------------------------------------------------

def test_retry_push_delivers_pending_and_failed_and_leaves_counts_alone(operator, alice, owed, memory_publisher):
    pending, failed = owed
    before = state_of(alice)
    r = action(operator, NOTIFICATIONS, "retry_push", [pending.pk, failed.pk])
    assert r.status_code == 200
    assert push_of(pending) == ("delivered", None, "") and push_of(failed) == ("delivered", None, "")
    assert not PendingPush.objects.exists()
    sent = memory_publisher.messages(user_topic(alice.pk), type="notification")
    assert sorted(m["id"] for m in sent) == sorted([pending.pk, failed.pk])
    after = state_of(alice)
    assert counts(after) == counts(before)
    assert all(m["unread_count"] == before.unread_count for m in sent)
    assert_count_exact(alice)
    assert any("delivered 2, still pending 0" in t and "failed 0" in t for t in texts(r)), texts(r)


def test_retry_push_while_the_broker_still_fails_keeps_them_owed(operator, alice, owed, memory_publisher):
    pending, failed = owed
    unread = state_of(alice).unread_count
    memory_publisher.fail = PublishError("connection refused")
    r = action(operator, NOTIFICATIONS, "retry_push", [pending.pk, failed.pk])
    assert {push_of(pending)[0], push_of(failed)[0]} <= {"pending", "failed"}
    assert PendingPush.objects.count() == 2
    assert memory_publisher.sent == []
    assert state_of(alice).unread_count == unread
    message = " ".join(texts(r))
    assert "delivered 0" in message and "connection refused" in message


def test_retry_push_of_a_permanent_failure_stays_failed_with_its_error(operator, owed, memory_publisher):
    _, failed = owed
    memory_publisher.fail = PublishError("HTTP 413: payload too large", permanent=True)
    r = action(operator, NOTIFICATIONS, "retry_push", [failed.pk])
    state, attempts, error = push_of(failed)
    assert (state, attempts, error) == ("failed", 2, "HTTP 413: payload too large")
    assert "failed 1" in " ".join(texts(r))


def test_retry_push_skips_what_owes_nothing(operator, alice, bob, memory_publisher, on_commit):
    delivered = comment_notification(alice, bob, memory_publisher, on_commit)
    memory_publisher.reset()
    r = action(operator, NOTIFICATIONS, "retry_push", [delivered.pk])
    assert memory_publisher.sent == []
    assert "None of the selected notifications owes a push." in texts(r)


def test_retry_push_goes_in_batches(operator, alice, bob, memory_publisher, on_commit, monkeypatch):
    monkeypatch.setattr(notifier_admin, "RETRY_BATCH", 2)
    calls = []
    real = notifier_admin.delivery.deliver
    monkeypatch.setattr(notifier_admin.delivery, "deliver", lambda ids: calls.append(list(ids)) or real(ids))
    owed = [comment_notification(alice, bob, memory_publisher, on_commit, PublishError("down")) for _ in range(5)]
    memory_publisher.reset()
    # "Select all" across the filtered list: the action gets the whole queryset.
    r = operator.post(f"{NOTIFICATIONS}?push=pending",
                      {"action": "retry_push", "select_across": "1", "index": "0", "_selected_action": [owed[0].pk]},
                      follow=True)
    assert r.status_code == 200
    assert [len(c) for c in calls] == [2, 2, 1]
    assert not PendingPush.objects.exists()
    assert len(memory_publisher.messages(type="notification")) == 5


def test_retry_push_from_the_outbox_list(operator, owed, memory_publisher):
    pending, failed = owed
    action(operator, PENDING, "retry_push", [pending.pk, failed.pk])
    assert not PendingPush.objects.exists()
    assert len(memory_publisher.sent) == 2


# --- Test push ---------------------------------------------------------------------------------

def test_test_push_reaches_the_users_topic_and_stores_nothing(operator, alice, bob, owed, memory_publisher):
    notifications, unread = Notification.objects.count(), state_of(alice).unread_count
    owed_before = sorted(PendingPush.objects.values_list("pk", flat=True))
    r = action(operator, STATES, "push_test_message", [alice.pk])
    [message] = memory_publisher.messages(user_topic(alice.pk), type="test")
    assert set(message) == {"v", "type", "text", "sent_at"}
    assert message["v"] == 1 and message["text"] == "Test push from the Herald admin."
    assert memory_publisher.messages(user_topic(bob.pk)) == []
    assert memory_publisher.urgent == [True]
    assert Notification.objects.count() == notifications
    assert state_of(alice).unread_count == unread and state_of(alice).last_seq == 2
    assert sorted(PendingPush.objects.values_list("pk", flat=True)) == owed_before
    assert "Test push delivered to 1 user(s)." in texts(r)


def test_test_push_from_the_user_list(operator, alice, bob, memory_publisher):
    r = action(operator, USERS, "push_test_message", [alice.pk, bob.pk])
    assert {t for t, _ in memory_publisher.sent} == {user_topic(alice.pk), user_topic(bob.pk)}
    assert "Test push delivered to 2 user(s)." in texts(r)
    assert Notification.objects.count() == 0


def test_test_push_failure_is_reported_with_its_error(operator, alice, memory_publisher):
    memory_publisher.fail = PublishError("HTTP 413: payload too large", permanent=True)
    r = action(operator, STATES, "push_test_message", [alice.pk])
    assert "Test push failed for 1 user(s) (alice): HTTP 413: payload too large" in texts(r)
    memory_publisher.fail = PublishError("connection refused")
    r = action(operator, STATES, "push_test_message", [alice.pk])
    assert "Test push failed for 1 user(s) (alice): connection refused" in texts(r)
    assert PendingPush.objects.count() == 0  # nothing owed: a test push is not retried


def test_test_push_is_tried_even_when_the_breaker_is_open(operator, alice, memory_publisher):
    memory_publisher.gate.breaker.trip()
    action(operator, STATES, "push_test_message", [alice.pk])
    assert len(memory_publisher.messages(user_topic(alice.pk), type="test")) == 1
    assert not memory_publisher.gate.breaker.is_open()


def test_test_push_refuses_a_broadcast(operator, alice, bob, memory_publisher, monkeypatch):
    monkeypatch.setattr(notifier_admin, "TEST_PUSH_LIMIT", 1)
    r = action(operator, STATES, "push_test_message", [alice.pk, bob.pk])
    assert memory_publisher.sent == []
    assert any("at most 1 users" in t for t in texts(r))


# --- Who may run them --------------------------------------------------------------------------

@pytest.mark.parametrize("url, name", [(NOTIFICATIONS, "retry_push"), (PENDING, "retry_push"),
                                       (STATES, "push_test_message"), (USERS, "push_test_message")])
def test_non_staff_cannot_run_the_actions(client, alice, bob, owed, memory_publisher, url, name):
    client.force_login(bob)
    ids = [n.pk for n in owed] if name == "retry_push" else [alice.pk]
    r = client.post(url, {"action": name, "_selected_action": ids})
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    assert memory_publisher.sent == [] and PendingPush.objects.count() == 2


def test_staff_who_may_only_view_cannot_run_the_actions(client, alice, make_user, owed, memory_publisher):
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_notification", "view_pendingpush", "view_notificationstate", "view_user"]))
    client.force_login(viewer)
    page = client.get(NOTIFICATIONS)
    assert page.status_code == 200 and b"retry_push" not in page.content
    for url, name, ids in [(NOTIFICATIONS, "retry_push", [n.pk for n in owed]),
                           (PENDING, "retry_push", [n.pk for n in owed]),
                           (STATES, "push_test_message", [alice.pk]), (USERS, "push_test_message", [alice.pk])]:
        assert client.post(url, {"action": name, "_selected_action": ids}).status_code in (200, 302)
    assert memory_publisher.sent == [] and PendingPush.objects.count() == 2


# --- Changelists on large tables ---------------------------------------------------------------

LISTS = [NOTIFICATIONS, f"{NOTIFICATIONS}?push=pending", f"{NOTIFICATIONS}?kind__exact=comment&read=no",
         f"{NOTIFICATIONS}?q=alice", PENDING, f"{PENDING}?state=failed", f"{PENDING}?state=pending&q=alice",
         STATES, f"{STATES}?q=ALICE", USERS, "/admin/feed/post/", "/admin/feed/comment/", "/admin/feed/like/",
         "/admin/feed/follow/"]


def test_changelists_run_a_fixed_number_of_queries(operator, alice, bob, make_user, memory_publisher, on_commit):
    def measure():
        out = {}
        for url in LISTS:
            with CaptureQueriesContext(connection) as ctx:
                r = operator.get(url)
            assert r.status_code == 200, url
            out[url] = len(ctx)
        return out

    comment_notification(alice, bob, memory_publisher, on_commit, PublishError("down"))
    comment_notification(alice, bob, memory_publisher, on_commit, PublishError("too large", permanent=True))
    services.follow(bob, "alice")
    few = measure()
    fans = [make_user(f"fan{i}") for i in range(12)]
    for i, fan in enumerate(fans):
        services.follow(fan, "alice")
        post = services.create_post(alice, f"post {i}")
        fail = PublishError("down") if i % 2 else PublishError("too large", permanent=True)
        memory_publisher.fail = fail
        with on_commit():
            services.add_comment(fan, post.pk, f"comment {i} @bob")
        memory_publisher.fail = None
        memory_publisher.gate.breaker.reset()
        services.like(fan, post.pk)
    assert PendingPush.objects.count() > 20
    assert measure() == few


def test_search_finds_the_recipient_by_exact_username(operator, alice, bob, make_user, memory_publisher, on_commit):
    make_user("alicia")
    mine = comment_notification(alice, bob, memory_publisher, on_commit)
    theirs = comment_notification(bob, alice, memory_publisher, on_commit)
    r = operator.get(f"{NOTIFICATIONS}?q=@Alice")
    listed = {obj.pk for obj in r.context["cl"].result_list}
    assert mine.pk in listed and theirs.pk not in listed
    assert operator.get(f"{NOTIFICATIONS}?q=ali").context["cl"].result_count == 0


def test_large_table_admins_do_not_count_the_whole_table():
    for model in (Notification, NotificationState, PendingPush, User, Post, Comment, Like, Follow):
        model_admin = django_admin.site._registry[model]
        assert model_admin.show_full_result_count is False, model
        assert model_admin.paginator is notifier_admin.CountEstimatePaginator, model
    notification_admin = django_admin.site._registry[Notification]
    assert "created_at" not in notification_admin.list_filter
    assert django_admin.site._registry[Post].date_hierarchy is None


def test_outbox_admin_is_read_only(operator, owed):
    pending, _ = owed
    r = operator.get(f"{PENDING}{pending.pk}/change/")
    assert r.status_code == 200 and b'name="_save"' not in r.content
    assert operator.get(f"{PENDING}add/").status_code == 403
    assert operator.post(f"{PENDING}{pending.pk}/delete/", {"post": "yes"}).status_code == 403
    assert PendingPush.objects.count() == 2


def test_paginator_counts_a_filtered_list_exactly(alice, bob):
    for i in range(3):
        services.create_post(alice, f"p{i}")
    services.create_post(bob, "b")
    paginator = notifier_admin.CountEstimatePaginator(Post.objects.filter(author=alice).order_by("-pk"), 100)
    assert paginator.count == 3
    assert notifier_admin.CountEstimatePaginator(Post.objects.order_by("-pk"), 100).count == 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's estimate is PostgreSQL's")
def test_paginator_takes_the_planner_estimate_for_an_unfiltered_list(alice, monkeypatch):
    Post.objects.bulk_create([Post(author=alice, text=f"p{i}") for i in range(50)])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Post._meta.db_table}")
    monkeypatch.setattr(notifier_admin.CountEstimatePaginator, "EXACT_BELOW", 10)
    with CaptureQueriesContext(connection) as ctx:
        count = notifier_admin.CountEstimatePaginator(Post.objects.order_by("-pk"), 100).count
    assert count == 50
    assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)
    # Under EXACT_BELOW (a small or never-analyzed table) the count is exact.
    monkeypatch.setattr(notifier_admin.CountEstimatePaginator, "EXACT_BELOW", 10_000)
    Post.objects.bulk_create([Post(author=alice, text="one more")])
    assert notifier_admin.CountEstimatePaginator(Post.objects.order_by("-pk"), 100).count == 51
    assert Paginator(Post.objects.order_by("-pk"), 100).count == 51


# --- Against the real emulator -----------------------------------------------------------------

def test_test_push_reaches_a_subscribed_client_through_the_emulator(operator, api, alice, live_push):
    from .test_live_push import credentials, subscriber

    client = subscriber(credentials(api, alice), live_push.mqtt_port)
    try:
        r = action(operator, STATES, "push_test_message", [alice.pk])
        message = client.next_message(timeout=2.0)
        assert message.topic == user_topic(alice.pk)
        body = json.loads(message.payload.decode("utf-8"))
        assert body["type"] == "test" and body["text"] == "Test push from the Herald admin."
        assert "Test push delivered to 1 user(s)." in texts(r)
    finally:
        client.close()
    assert Notification.objects.count() == 0
