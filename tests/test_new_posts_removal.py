"""Deleting a post that a follower's "new posts" item stands for (one author's posts of a window,
one item per follower, showing the newest: notifier.groups): the item loses that post from its
count and, when it was the one shown, goes back to the newest post left; it goes only with the
last. Counts stay exact, open tabs get the item changed in place or its removal, and a deletion
racing a newer post's fan-out (threads, each on its own connection) leaves every item pointing at
a post that exists, counting exactly the posts it stands for.
"""
import pytest
from feed import fanout, services
from feed.models import Post, User
from notifier import removals
from notifier import services as notes
from notifier.models import Notification, NotificationState
from notifier.topics import user_topic

from .helpers import assert_count_exact, make_followers, state_of
from .test_races import check_consistency, file_backed_sqlite, queued_post, race  # noqa: F401 (fixture)
from .test_races import make_followers as make_followers_with_state

pytestmark = pytest.mark.django_db


def item_of(user) -> Notification:
    return Notification.objects.get(recipient=user, kind="new_post")


def messages_to(publisher, user, kind) -> list[dict]:
    return [m for m in publisher.messages(topic=user_topic(user.pk)) if m["type"] == kind]


def posted(on_commit, author, *texts) -> list[Post]:
    posts = []
    for text in texts:
        with on_commit():  # the fan-out runs after the commit
            posts.append(services.create_post(author, text))
    return posts


def test_an_authors_posts_are_counted_on_one_item(api, alice, bob, on_commit):
    services.follow(bob, "alice")
    first, second = posted(on_commit, alice, "first", "second")
    [item] = api.as_(bob).get("/api/notifications/").json()["results"]
    assert (item["count"], item["text"], item["url"]) == (2, "Alice posted: “second”", second.get_absolute_url())
    assert item_of(bob).post_ref == second.pk
    assert (state_of(bob).unread_count, state_of(bob).unseen_count) == (1, 1)


def test_deleting_the_newest_post_moves_the_item_back_to_the_earlier_one(api, alice, bob, memory_publisher,
                                                                         on_commit):
    services.follow(bob, "alice")
    first, second = posted(on_commit, alice, "first", "second")
    before = item_of(bob)
    memory_publisher.reset()
    with on_commit():
        services.delete_post(alice, second.pk)
    after = item_of(bob)
    assert (after.pk, after.seq, after.post_ref, after.actor_count) == (before.pk, before.seq, first.pk, 1)
    assert (after.url, after.created_at) == (first.get_absolute_url(), first.created_at)
    [item] = api.as_(bob).get("/api/notifications/").json()["results"]
    assert (item["count"], item["text"], item["read"]) == (1, "Alice posted: “first”", False)
    assert (state_of(bob).unread_count, state_of(bob).unseen_count) == (1, 1)  # the same unread item
    # Open tabs replace it in place (same id and seq); nothing is removed.
    [changed] = messages_to(memory_publisher, bob, "notification")
    assert (changed["id"], changed["seq"], changed["count"], changed["url"]) == (
        before.pk, before.seq, 1, first.get_absolute_url())
    assert (changed["text"], changed["unread_count"], changed["unseen_count"]) == ("Alice posted: “first”", 1, 1)
    assert messages_to(memory_publisher, bob, "removed") == []
    assert_count_exact(alice, bob)


def test_deleting_every_post_takes_the_item_and_its_counts(api, alice, bob, carol, memory_publisher, on_commit):
    services.follow(bob, "alice")
    services.follow(carol, "alice")
    first, second = posted(on_commit, alice, "first", "second")
    item_id = item_of(bob).pk
    services.delete_post(alice, second.pk)
    memory_publisher.reset()
    with on_commit():
        services.delete_post(alice, first.pk)
    assert not Notification.objects.filter(kind="new_post").exists()
    assert (state_of(bob).unread_count, state_of(bob).unseen_count) == (0, 0)
    [removed] = messages_to(memory_publisher, bob, "removed")
    assert (removed["ids"], removed["unread_count"], removed["unseen_count"]) == ([item_id], 0, 0)
    assert messages_to(memory_publisher, bob, "notification") == []
    assert_count_exact(bob, carol)


def test_deleting_an_older_post_keeps_the_newest_and_counts_one_less(api, alice, bob, memory_publisher, on_commit):
    services.follow(bob, "alice")
    first, second, third = posted(on_commit, alice, "first", "second", "third")
    before = item_of(bob)
    assert before.actor_count == 3
    memory_publisher.reset()
    with on_commit():
        services.delete_post(alice, first.pk)
    after = item_of(bob)
    assert (after.pk, after.seq, after.post_ref, after.actor_count, after.text) == (
        before.pk, before.seq, third.pk, 2, "Alice posted: “third”")
    [changed] = messages_to(memory_publisher, bob, "notification")
    assert (changed["id"], changed["seq"], changed["count"]) == (before.pk, before.seq, 2)
    services.delete_post(alice, third.pk)
    assert (item_of(bob).post_ref, item_of(bob).actor_count) == (second.pk, 1)
    assert_count_exact(bob)


def test_a_read_item_stays_read_and_leaves_the_counts_alone(api, alice, bob, on_commit):
    services.follow(bob, "alice")
    first, second = posted(on_commit, alice, "first", "second")
    notes.mark_read(bob, item_of(bob).pk)
    notes.mark_seen(bob)
    services.delete_post(alice, second.pk)
    [item] = api.as_(bob).get("/api/notifications/").json()["results"]
    assert (item["count"], item["url"], item["read"]) == (1, first.get_absolute_url(), True)
    assert (state_of(bob).unread_count, state_of(bob).unseen_count) == (0, 0)
    assert_count_exact(bob)
    services.delete_post(alice, first.pk)
    assert not Notification.objects.filter(recipient=bob).exists()
    assert (state_of(bob).unread_count, state_of(bob).unseen_count) == (0, 0)
    assert_count_exact(bob)


def test_an_item_read_by_watermark_stays_read(alice, bob, on_commit):
    services.follow(bob, "alice")
    first, second, third = posted(on_commit, alice, "first", "second", "third")
    notes.mark_all_read(bob)
    services.delete_post(alice, third.pk)
    services.delete_post(alice, first.pk)
    assert (item_of(bob).post_ref, item_of(bob).actor_count) == (second.pk, 1)
    assert state_of(bob).unread_count == 0
    assert_count_exact(bob)


def test_the_item_goes_back_only_to_posts_its_follower_was_told_of(alice, bob, carol, on_commit):
    """A post that mentioned bob told him by a mention, not on this item; carol followed after the
    first post, so her item never stood for it."""
    services.follow(bob, "alice")
    first, = posted(on_commit, alice, "first")
    services.follow(carol, "alice")
    mention, last = posted(on_commit, alice, "hey @bob", "last")
    assert (item_of(bob).actor_count, item_of(carol).actor_count) == (2, 2)
    services.delete_post(alice, last.pk)
    assert (item_of(bob).post_ref, item_of(bob).actor_count) == (first.pk, 1)
    assert (item_of(carol).post_ref, item_of(carol).actor_count) == (mention.pk, 1)
    services.delete_post(alice, first.pk)  # carol's item never counted it
    assert not Notification.objects.filter(recipient=bob, kind="new_post").exists()
    assert (item_of(carol).post_ref, item_of(carol).actor_count) == (mention.pk, 1)
    assert Notification.objects.filter(recipient=bob, kind="mention", event__post_ref=mention.pk).exists()
    assert_count_exact(bob, carol)


def test_the_admins_delete_moves_the_item_back_too(alice, bob, on_commit):
    services.follow(bob, "alice")
    first, second = posted(on_commit, alice, "first", "second")
    services.remove_post(second)
    assert (item_of(bob).post_ref, item_of(bob).actor_count) == (first.pk, 1)
    assert_count_exact(bob)


def test_a_big_fan_out_is_told_by_background_chunks(alice, memory_publisher, on_commit, monkeypatch):
    monkeypatch.setattr(removals, "INLINE", 3)
    monkeypatch.setattr(removals, "CHUNK", 4)
    fans = make_followers(alice, 10)
    first, second = posted(on_commit, alice, "first", "second")
    items = dict(Notification.objects.filter(kind="new_post").values_list("recipient_id", "pk"))
    memory_publisher.reset()
    with on_commit():
        services.delete_post(alice, second.pk)
    for fan in fans:
        [message] = messages_to(memory_publisher, fan, "notification")
        assert (message["id"], message["count"], message["url"]) == (items[fan.pk], 1, first.get_absolute_url())
    assert set(Notification.objects.filter(kind="new_post").values_list("event__post_ref", "actor_count")) == {(first.pk, 1)}
    assert_count_exact(*fans)


@pytest.mark.parametrize("older", [False, True], ids=["newest", "older"])
def test_a_deletion_is_a_few_statements_whatever_the_number_of_followers(alice, make_user, on_commit, older,
                                                                         django_assert_max_num_queries):
    """Set-based: the same statements for 5 followers as for 150 (no statement per follower)."""
    counted = []
    for n, prefix in ((5, "few"), (150, "many")):
        author = make_user(f"author_{prefix}")
        make_followers(author, n, prefix)
        posts = posted(on_commit, author, "one", "two", "three")
        with django_assert_max_num_queries(100) as captured:
            services.delete_post(author, posts[0 if older else -1].pk)
        counted.append(len(captured))
        expected = (posts[-1].pk, 2) if older else (posts[1].pk, 2)
        assert set(Notification.objects.filter(event__actor=author, kind="new_post").values_list(
            "event__post_ref", "actor_count")) == {expected}
    assert counted[0] == counted[1], counted


# --- Against a newer post's fan-out, in threads ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deleting_a_post_while_a_newer_one_fans_out(settings):
    """Each round, a post by the author is deleted (the newest one the followers' items show, or
    an older one) while the fan-out chunks of a newer post run in threads. Whoever wins each
    follower's lock, no thread fails (no deadlock), every item ends up on the newest post that
    exists, counting every post that exists, and every count is exact."""
    settings.NOTIFICATION_GROUP_WINDOW = 10 ** 9  # one window for the whole test, whenever it runs
    loud = User.objects.create(username="loud", display_name="Loud")
    NotificationState.objects.get_or_create(user=loud)
    followers = make_followers_with_state(loud, 300, "ear")
    bounds = fanout.chunk_bounds(loud.pk, size=100)

    def fan_out(post):
        for after, upto in bounds:
            fanout.fan_out_chunk.call(post.pk, after, upto)

    rounds = 6
    for r in range(rounds):
        older, newest = queued_post(settings, loud, f"older {r}"), queued_post(settings, loud, f"newest {r}")
        fan_out(older)
        fan_out(newest)
        coming = queued_post(settings, loud, f"coming {r}")  # committed; its fan-out races the delete
        doomed = newest if r % 2 == 0 else older

        def chunk(after, upto):
            return lambda _: fanout.fan_out_chunk.call(coming.pk, after, upto)

        jobs = {f"chunk({a},{b}]": chunk(a, b) for a, b in bounds}
        jobs["delete"] = lambda _: services.delete_post(loud, doomed.pk)
        results = race(jobs)
        told = sum(results[f"chunk({a},{b}]"][0] for a, b in bounds)
        assert told == len(followers), f"round {r}: the newer post's fan-out told {told}"

        left = list(Post.objects.filter(author=loud).order_by("pk").values_list("pk", flat=True))
        assert doomed.pk not in left
        items = set(Notification.objects.filter(kind="new_post").values_list("event__post_ref", "actor_count"))
        assert items == {(left[-1], len(left))}, f"round {r}: items (post, count) {items}, posts {left}"
        per = Notification.objects.filter(kind="new_post").values_list("recipient_id", flat=True)
        assert sorted(per) == sorted(f.pk for f in followers)
    check_consistency([loud, *followers], withdrawn=True)


def test_the_page_shows_no_plus_n_people_for_an_authors_many_posts(client, alice, bob, make_user, on_commit):
    services.follow(bob, "alice")
    posted(on_commit, alice, "one", "two", "three", "four", "five")
    assert item_of(bob).actor_count == 5  # posts, not people
    client.force_login(bob)
    page = client.get("/notifications/").content.decode()
    assert 'class="notification kind-new_post' in page
    assert "avatar tiny more" not in page
    # … while a like by four people still shows "+1" beside three faces.
    post = services.create_post(bob, "mine")
    for name in ("l1", "l2", "l3", "l4"):
        services.like(make_user(name), post.pk)
    page = client.get("/notifications/").content.decode()
    assert '<span class="avatar tiny more">+1</span>' in page
