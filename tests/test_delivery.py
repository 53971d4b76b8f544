"""The push pipeline: after commit, the DESIGN envelope to the private topic, delivery state recorded."""
import pytest
from django.db import transaction

from feed import services
from notifier import delivery
from notifier.models import Notification
from notifier.push.publisher import PublishError

from .helpers import push_of

pytestmark = pytest.mark.django_db


def test_comment_pushes_the_envelope_after_commit(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    with on_commit():
        comment = services.add_comment(bob, post.pk, "hi <b>there</b>")
        assert memory_publisher.sent == []  # nothing leaves before the commit
    # (The post's public topic hears of it too: tests/test_post_activity.py.)
    [(topic, message)] = [(t, m) for t, m in memory_publisher.sent if "/users/" in t]
    n = Notification.objects.get(recipient=alice)
    assert topic == f"herald/dev/users/{alice.pk}/notifications"
    assert message == {
        "v": 1, "type": "notification", "seq": 1, "id": n.pk, "kind": "comment",
        "actor": {"username": "bob", "display_name": "Bob", "avatar": None},
        "actors": [{"username": "bob", "display_name": "Bob", "avatar": None}], "count": 1,
        "text": "Bob commented on your post: “hi <b>there</b>”",
        "url": f"/posts/{post.pk}/#comment-{comment.pk}",
        "created_at": n.created_at.isoformat(), "read": False, "unread_count": 1, "unseen_count": 1,
    }
    assert push_of(n) == ("delivered", None, "")


def test_topic_prefix_comes_from_settings(alice, bob, memory_publisher, on_commit, settings):
    settings.IOT_TOPIC_PREFIX = "herald/prod"
    with on_commit():
        services.follow(bob, "alice")
    assert memory_publisher.sent[0][0] == f"herald/prod/users/{alice.pk}/notifications"


def test_rolled_back_write_pushes_nothing(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    with on_commit():
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                services.add_comment(bob, post.pk, "never happened")
                raise RuntimeError("boom")
    assert memory_publisher.sent == []
    assert not Notification.objects.exists()


def test_transient_failure_leaves_the_row_pending_for_retry(alice, bob, memory_publisher, on_commit):
    memory_publisher.fail = PublishError("connection refused")
    with on_commit():
        services.follow(bob, "alice")
    n = Notification.objects.get(recipient=alice)
    assert push_of(n) == ("pending", 1, "connection refused")

    memory_publisher.fail = None
    assert delivery.deliver([n.pk]) == {"delivered": 1, "pending": 0, "failed": 0}
    assert push_of(n) == ("delivered", None, "")
    assert len(memory_publisher.sent) == 1
    # Delivering again is a no-op: delivered rows are never pushed twice.
    assert delivery.deliver([n.pk]) == {"delivered": 0, "pending": 0, "failed": 0}


def test_permanent_failure_marks_the_row_failed(alice, bob, memory_publisher, on_commit):
    memory_publisher.fail = PublishError("HTTP 413: payload too large", permanent=True)
    with on_commit():
        services.follow(bob, "alice")
    n = Notification.objects.get(recipient=alice)
    state, attempts, error = push_of(n)
    assert (state, attempts) == ("failed", 1)
    assert "413" in error
    assert delivery.deliver([n.pk])["delivered"] == 0


def test_fanout_pushes_each_follower_with_their_own_count(alice, bob, carol, memory_publisher, on_commit):
    services.follow(bob, "alice")
    services.follow(carol, "alice")
    services.create_post(carol, "carol's own")  # bob does not follow carol: no effect on bob
    with on_commit():
        services.create_post(alice, "news")
    topics = sorted(t for t, _ in memory_publisher.sent)
    assert topics == sorted(f"herald/dev/users/{u.pk}/notifications" for u in (bob, carol))
    assert all(m["kind"] == "new_post" and m["unread_count"] == 1 for _, m in memory_publisher.sent)


def test_marking_read_pushes_a_read_message(alice, bob, memory_publisher, on_commit):
    import notifier.services

    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "one")
    services.add_comment(bob, post.pk, "two")
    first = Notification.objects.filter(recipient=alice).order_by("seq").first()
    with on_commit():
        notifier.services.mark_read(alice, first.pk)
    with on_commit():
        notifier.services.mark_all_read(alice)
    reads = memory_publisher.messages(type="read")
    assert reads == [
        {"v": 1, "type": "read", "seq": 2, "ids": [first.pk], "all": False, "unread_count": 1, "unseen_count": 2},
        {"v": 1, "type": "read", "seq": 2, "ids": None, "all": True, "unread_count": 0, "unseen_count": 2},
    ]


def test_shared_encoding_gives_each_recipient_the_same_bytes_as_encoding_alone(alice, bob, make_user):
    """encode_items encodes an event's shared part once; every message must still be exactly what
    encoding it alone gives: a fan-out's items (one actors tuple), a group with its own actors, a
    read item, text that needs escaping."""
    from datetime import datetime, timezone as tz

    from notifier import envelope
    from notifier.envelope import actor_dict

    shared = (actor_dict(bob),)
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=tz.utc)
    items = [delivery.Outgoing(pk=10 + i, recipient_id=100 + i, seq=5 + i, kind="new_post", actor=bob,
                               text='Bob posted: “<b>"quoted"</b> ✓”', url="/posts/1/", created_at=at,
                               unread_count=i, unseen_count=2 * i, actor_list=shared, read=i == 2) for i in range(4)]
    items.append(delivery.Outgoing(pk=99, recipient_id=7, seq=3, kind="like", actor=bob, text="{actors} liked your post",
                                   url="/posts/2/", created_at=at, unread_count=1, actor_count=3,
                                   actor_list=(actor_dict(bob), actor_dict(alice))))
    encoded = delivery.encode_items(items)
    assert encoded == [envelope.encode(delivery.item_message(item)) for item in items]
    import json
    assert [json.loads(b)["unread_count"] for b in encoded[:4]] == [0, 1, 2, 3]
    assert json.loads(encoded[4])["text"] == "Bob and 2 others liked your post"
