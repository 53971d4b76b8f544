"""The rules of who is told what, and the exact unread count, at the service level."""
import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

import notifier
from feed import services
from feed.models import User
from notifier.models import Notification, NotificationState, PendingPush

from .helpers import assert_count_exact, kinds_of, state_of

pytestmark = pytest.mark.django_db


def test_nobody_is_notified_of_their_own_action(alice):
    post = services.create_post(alice, "talking to myself @alice")
    services.add_comment(alice, post.pk, "and again @alice")
    services.like(alice, post.pk)
    assert not Notification.objects.exists()


def test_comment_notifies_post_author(alice, bob):
    post = services.create_post(alice, "hello")
    comment = services.add_comment(bob, post.pk, "hi there")
    n = Notification.objects.get(recipient=alice)
    assert (n.kind, n.actor, n.post_ref, n.comment_ref) == ("comment", bob, post.pk, comment.pk)
    assert n.url == f"/posts/{post.pk}/#comment-{comment.pk}"
    assert "Bob commented on your post" in n.text and "hi there" in n.text
    assert_count_exact(alice, bob)


def test_commenting_follows_the_post_so_later_comments_notify_once_each(alice, bob, carol):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "first")
    services.add_comment(bob, post.pk, "second")
    services.add_comment(carol, post.pk, "third")
    assert kinds_of(bob) == ["comment"]  # carol's; never his own
    assert Notification.objects.get(recipient=bob).text == "Carol commented on Alice’s post: “third”"
    assert kinds_of(alice) == ["comment", "comment", "comment"]
    assert kinds_of(carol) == []


def test_new_post_notifies_every_follower_with_one_bulk_insert(alice, make_user, on_commit):
    followers = [make_user(f"fan{i}") for i in range(40)]
    for fan in followers:
        services.follow(fan, "alice")
    with CaptureQueriesContext(connection) as queries, on_commit():
        post = services.create_post(alice, "big news")
    # (On PostgreSQL the outbox rows are inserted by the same statement, a WITH around it.)
    inserts = [q["sql"] for q in queries if 'INSERT INTO "notifier_notification" ' in q["sql"]]
    assert len(inserts) == 1
    assert Notification.objects.filter(kind="new_post", event__post_ref=post.pk).count() == 40
    # The state rows move together with the rows: one UPDATE for all 40, not one per follower.
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "notifier_notificationstate"')]
    assert len(updates) == 1
    assert_count_exact(*followers)


def test_user_mentioned_twice_is_notified_once(alice, bob):
    services.create_post(alice, "@bob hey @bob, and @BOB again")
    assert kinds_of(bob) == ["mention"]


def test_mention_of_unknown_user_is_ignored(alice):
    post = services.create_post(alice, "hi @nobody_here")
    assert list(post.mentions.all()) == []


def test_follower_who_is_mentioned_gets_mention_not_new_post(alice, bob, carol, on_commit):
    services.follow(bob, "alice")
    services.follow(carol, "alice")
    with on_commit():
        services.create_post(alice, "look @bob")
    assert kinds_of(bob) == ["mention"]
    assert kinds_of(carol) == ["new_post"]


def test_post_author_who_is_mentioned_gets_one_notification(alice, bob):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "@alice nice post @alice")
    assert kinds_of(alice) == ["comment"]


def test_mentioned_follower_gets_mention_not_comment(alice, bob, carol):
    post = services.create_post(alice, "hello")
    services.add_comment(carol, post.pk, "first")
    services.add_comment(bob, post.pk, "@carol agreed")
    assert kinds_of(carol) == ["mention"]


def test_like_twice_is_one_like_and_one_notification(alice, bob):
    post = services.create_post(alice, "like me")
    assert services.like(bob, post.pk) is True
    assert services.like(bob, post.pk) is False
    services.unlike(bob, post.pk)
    assert services.like(bob, post.pk) is True
    assert post.likes.count() == 1
    assert kinds_of(alice) == ["like"]
    assert_count_exact(alice)


def test_follow_twice_is_one_follow_and_one_notification(alice, bob):
    assert services.follow(bob, "alice") is True
    assert services.follow(bob, "ALICE") is False
    services.unfollow(bob, "alice")
    services.follow(bob, "alice")
    assert kinds_of(alice) == ["follow"]


def test_seq_increases_per_user_and_count_is_exact(alice, bob, carol):
    post = services.create_post(alice, "hello")
    for i in range(3):
        services.add_comment(bob, post.pk, f"comment {i}")
    services.like(carol, post.pk)
    seqs = list(Notification.objects.filter(recipient=alice).order_by("id").values_list("seq", flat=True))
    assert seqs == [1, 2, 3, 4]
    assert state_of(alice).last_seq == 4
    assert state_of(alice).unread_count == 4
    assert_count_exact(alice, bob, carol)


def test_deleting_a_post_removes_its_notifications_and_keeps_counts_exact(alice, bob, carol, on_commit):
    services.follow(bob, "alice")
    with on_commit():
        post = services.create_post(alice, "doomed @carol")
        other = services.create_post(alice, "stays")
    services.add_comment(bob, post.pk, "comment @carol")
    services.add_comment(carol, post.pk, "reply")
    services.like(bob, post.pk)
    services.like(bob, other.pk)
    # Alice's two posts are one item for bob (it shows the newest, `other`); the comment on the
    # doomed post he follows (he commented) is read.
    assert kinds_of(bob) == ["new_post", "comment"]
    notifier.services.mark_read(bob, Notification.objects.get(recipient=bob, kind="comment").pk)
    assert state_of(bob).unread_count == 1

    services.delete_post(alice, post.pk)

    assert not Notification.objects.filter(event__post_ref=post.pk).exists()
    assert kinds_of(alice) == ["follow", "like"]  # the follow and the like of `other` survive
    assert kinds_of(bob) == ["new_post"]
    assert state_of(bob).unread_count == 1
    assert state_of(carol).unread_count == 0
    assert_count_exact(alice, bob, carol)


def test_deleting_a_comment_removes_only_its_notifications(alice, bob, carol):
    post = services.create_post(alice, "hello")
    keep = services.add_comment(bob, post.pk, "keep")
    gone = services.add_comment(carol, post.pk, "gone @bob")
    services.delete_comment(carol, gone.pk)
    assert not Notification.objects.filter(event__comment_ref=gone.pk).exists()
    assert Notification.objects.filter(event__comment_ref=keep.pk).count() == 1
    assert_count_exact(alice, bob, carol)


def test_only_authors_delete(alice, bob):
    from django.core.exceptions import PermissionDenied

    post = services.create_post(alice, "mine")
    comment = services.add_comment(alice, post.pk, "mine too")
    with pytest.raises(PermissionDenied):
        services.delete_post(bob, post.pk)
    with pytest.raises(PermissionDenied):
        services.delete_comment(bob, comment.pk)


def test_mark_read_and_mark_all_read_keep_count_exact(alice, bob):
    post = services.create_post(alice, "hello")
    for i in range(5):
        services.add_comment(bob, post.pk, f"c{i}")
    first = Notification.objects.filter(recipient=alice).order_by("seq").first()
    assert notifier.services.mark_read(alice, first.pk) == 4
    assert notifier.services.mark_read(alice, first.pk) == 4  # twice is once
    assert_count_exact(alice)
    with CaptureQueriesContext(connection) as queries:
        assert notifier.services.mark_all_read(alice) == 4
    # A watermark on the state row: no notification row is touched, whatever the backlog.
    assert not [q for q in queries if '"notifier_notification"' in q["sql"]]
    assert (state_of(alice).unread_count, state_of(alice).read_seq) == (0, 5)
    assert_count_exact(alice)
    services.add_comment(bob, post.pk, "after the watermark")
    assert state_of(alice).unread_count == 1
    assert list(Notification.objects.for_user(alice).unread().values_list("seq", flat=True)) == [6]
    assert notifier.services.mark_read(alice, first.pk) == 1  # below the watermark: already read
    assert_count_exact(alice)


def test_mark_read_of_someone_elses_notification_is_refused(alice, bob):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "hi")
    theirs = Notification.objects.get(recipient=alice)
    with pytest.raises(Notification.DoesNotExist):
        notifier.services.mark_read(bob, theirs.pk)
    assert Notification.objects.get(pk=theirs.pk).read_at is None


def test_unread_count_never_runs_count(alice, bob):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "hi")
    with CaptureQueriesContext(connection) as queries:
        assert notifier.services.unread_count(alice) == 1
    assert len(queries) == 1 and "COUNT(" not in queries[0]["sql"].upper()


def test_a_retried_fanout_is_idempotent(alice, make_user):
    fans = [make_user(f"fan{i}") for i in range(5)]
    for _ in range(2):
        notifier.notify("new_post", fans, actor=alice, text="x", url="/posts/1/", post_ref=1, group="new_post:1")
    assert Notification.objects.count() == 5
    assert all(state_of(f).unread_count == 1 and state_of(f).last_seq == 1 for f in fans)


def test_a_retried_comment_is_idempotent(alice, bob):
    for _ in range(2):
        notifier.notify("comment", [alice], actor=bob, text="x", url="/posts/1/", post_ref=1, dedupe_key="comment:9")
    assert Notification.objects.count() == 1 and state_of(alice).last_seq == 1


@pytest.mark.django_db(transaction=True)
def test_nothing_is_stored_for_an_account_that_is_gone(alice, bob):
    """Recipient columns have no database foreign key: the recipient's state row, which every
    write creates or locks in its own transaction, has one, so a write for an account deleted
    meanwhile fails whole at its commit and leaves no row behind."""
    gone = bob.pk
    User.objects.filter(pk=gone).delete()
    with pytest.raises(IntegrityError):
        notifier.notify("comment", [gone], actor=alice, text="x", url="/posts/1/", post_ref=1, dedupe_key="comment:1")
    assert not Notification.objects.filter(recipient_id=gone).exists()
    assert not PendingPush.objects.filter(recipient_id=gone).exists()
    assert not NotificationState.objects.filter(user_id=gone).exists()
    notifier.notify("comment", [alice.pk], actor=None, text="x", url="/posts/1/", post_ref=1, dedupe_key="comment:2")
    assert Notification.objects.filter(recipient=alice).count() == 1  # the connection is fine afterwards


def test_unknown_kind_is_rejected(alice, bob):
    with pytest.raises(ValueError):
        notifier.notify("poke", [bob], actor=alice, text="x", url="/")


def test_deleting_an_account_keeps_other_counts_exact(alice, bob, carol):
    post = services.create_post(bob, "bob's post")
    services.add_comment(alice, post.pk, "from alice")
    services.add_comment(carol, post.pk, "from carol")
    alice_post = services.create_post(alice, "alice's post")
    services.add_comment(carol, alice_post.pk, "on alice's post")
    services.delete_account(User.objects.get(pk=bob.pk))
    assert_count_exact(alice, carol)
    assert not Notification.objects.filter(event__post_ref=post.pk).exists()
