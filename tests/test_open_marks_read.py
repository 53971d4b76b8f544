"""Opening a post reads what one was told about it and clears the badge (notifier.services.open_post
through the post page): counts stay exact, the work is a fixed number of statements, and every
open tab is told with a `read` and a `seen` message."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import services
from notifier import services as notes
from notifier.models import Kind, Notification
from notifier.topics import user_topic

from .helpers import assert_count_exact, state_of

pytestmark = pytest.mark.django_db


def unread_ids(user) -> set[int]:
    return set(Notification.objects.for_user(user).unread().values_list("pk", flat=True))


def about(user, post) -> set[int]:
    return set(Notification.objects.filter(recipient=user, event__post_ref=post.pk).values_list("pk", flat=True))


def open_page(client, user, post, on_commit):
    client.force_login(user)
    with on_commit():
        response = client.get(post.get_absolute_url())
    assert response.status_code == 200
    return response


def test_opening_a_post_reads_its_notifications_and_nothing_else(
        client, alice, bob, carol, make_user, on_commit, memory_publisher):
    post = services.create_post(alice, "the post")
    other = services.create_post(alice, "another post")
    services.add_comment(bob, post.pk, "a comment")
    services.like(bob, post.pk)
    services.like(carol, post.pk)  # the same grouped item
    services.add_comment(carol, post.pk, "hello @alice")  # a comment and a mention
    services.add_comment(bob, other.pk, "on the other post")
    services.follow(carol, "alice")
    own = about(alice, post)
    assert len(own) == 3 and own <= unread_ids(alice)
    left = unread_ids(alice) - own
    assert len(left) == 2
    memory_publisher.reset()

    open_page(client, alice, post, on_commit)

    assert unread_ids(alice) == left
    state = state_of(alice)
    assert (state.unread_count, state.unseen_count, state.seen_seq) == (2, 0, state.last_seq)
    assert_count_exact(alice)
    [read] = memory_publisher.messages(user_topic(alice.pk), "read")
    assert sorted(read["ids"]) == sorted(own) and read["all"] is False
    assert (read["unread_count"], read["unseen_count"], read["seq"]) == (2, 0, state.last_seq)
    [seen] = memory_publisher.messages(user_topic(alice.pk), "seen")
    assert (seen["unseen_count"], seen["seq"]) == (0, state.last_seq)


def test_a_second_visit_changes_and_tells_nothing(client, alice, bob, on_commit, memory_publisher):
    post = services.create_post(alice, "the post")
    services.add_comment(bob, post.pk, "a comment")
    open_page(client, alice, post, on_commit)
    before = state_of(alice)
    memory_publisher.reset()
    open_page(client, alice, post, on_commit)
    after = state_of(alice)
    assert (after.unread_count, after.unseen_count, after.read_seq, after.seen_seq) == (
        before.unread_count, before.unseen_count, before.read_seq, before.seen_seq)
    assert memory_publisher.messages(user_topic(alice.pk)) == []
    assert_count_exact(alice)


def test_what_the_watermark_already_read_is_not_counted_twice(client, alice, bob, carol, on_commit, memory_publisher):
    post = services.create_post(alice, "the post")
    services.add_comment(bob, post.pk, "first")
    notes.mark_all_read(alice)
    services.add_comment(carol, post.pk, "second")  # unread again, only this one
    newest = Notification.objects.filter(recipient=alice).latest("seq")
    memory_publisher.reset()
    assert notes.open_post(alice, post.pk) == [newest.pk]
    assert state_of(alice).unread_count == 0
    assert_count_exact(alice)


def test_the_new_posts_item_is_read_only_while_it_shows_the_opened_post(client, alice, bob, on_commit):
    services.follow(alice, "bob")
    with on_commit():  # the fan-out runs after the post's commit
        first = services.create_post(bob, "first")
    [item] = Notification.objects.filter(recipient=alice, kind=Kind.NEW_POST)
    assert item.post_ref == first.pk
    with on_commit():
        second = services.create_post(bob, "second")  # the item now shows this one
    item.refresh_from_db()
    assert item.post_ref == second.pk and item.read_at is None

    open_page(client, alice, first, on_commit)
    item.refresh_from_db()
    assert item.read_at is None  # it is about the newer post, not read yet
    assert state_of(alice).unseen_count == 0  # …but seen

    open_page(client, alice, second, on_commit)
    item.refresh_from_db()
    assert item.read_at is not None
    assert state_of(alice).unread_count == 0
    assert_count_exact(alice)


def statements(user, post) -> int:
    with CaptureQueriesContext(connection) as queries:
        notes.open_post(user, post.pk)
    return len(queries)


def test_the_statements_do_not_grow_with_the_notifications(alice, bob, make_user):
    small = services.create_post(alice, "one comment")
    services.add_comment(bob, small.pk, "a comment")
    big = services.create_post(alice, "many comments")
    for i in range(40):
        services.add_comment(make_user(f"fan{i}"), big.pk, f"comment {i}")
    services.add_comment(bob, small.pk, "unseen again")  # both calls below have a seen mark to move
    assert len(about(alice, big) & unread_ids(alice)) == 40

    few = statements(alice, small)
    services.add_comment(bob, big.pk, "unseen again")
    many = statements(alice, big)
    assert many == few <= 6
    assert not about(alice, big) & unread_ids(alice)
    assert_count_exact(alice)


def test_a_visitor_or_a_stranger_changes_nothing(client, alice, bob, carol, on_commit, memory_publisher):
    post = services.create_post(alice, "the post")
    services.add_comment(bob, post.pk, "a comment")
    memory_publisher.reset()
    with on_commit():
        assert client.get(post.get_absolute_url()).status_code == 200
    open_page(client, carol, post, on_commit)  # carol has nothing about it
    assert state_of(alice).unread_count == 1
    assert memory_publisher.messages(user_topic(alice.pk)) == []
    assert_count_exact(alice, carol)
