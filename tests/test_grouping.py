"""Grouped notifications, seen vs read, and preferences, through the services and the API."""
from datetime import timedelta

import pytest
from django.utils import timezone

import notifier
from feed import services
from notifier import services as notes
from notifier.models import MutedPost, Notification, NotificationActor, NotificationEvent, PendingPush

from .helpers import assert_count_exact, make_followers, state_of

pytestmark = pytest.mark.django_db


def items(api, user, **params):
    return api.as_(user).get("/api/notifications/", params).json()["results"]


def test_likes_of_one_post_are_one_item_that_names_the_newest(api, alice, bob, carol, make_user, on_commit):
    post = services.create_post(alice, "a good post")
    services.like(bob, post.pk)
    [first] = items(api, alice)
    assert (first["count"], first["text"]) == (1, "Bob liked your post: “a good post”")
    services.like(carol, post.pk)
    dave = make_user("dave", display_name="Dave")
    services.like(dave, post.pk)
    [item] = items(api, alice)
    assert item["id"] == first["id"] and item["seq"] > first["seq"]
    assert item["count"] == 3
    assert [a["username"] for a in item["actors"]] == ["dave", "carol", "bob"]
    assert item["actor"]["username"] == "dave"
    assert item["text"] == "Dave and 2 others liked your post: “a good post”"
    assert state_of(alice).unread_count == 1  # the bell counts items
    assert_count_exact(alice)


def test_two_actors_are_named(api, alice, bob, carol):
    post = services.create_post(alice, "p")
    services.like(bob, post.pk)
    services.like(carol, post.pk)
    assert items(api, alice)[0]["text"] == "Carol and Bob liked your post: “p”"


def test_a_bump_makes_a_read_item_unread_and_unseen_again_and_catch_up_returns_it(api, alice, bob, carol):
    post = services.create_post(alice, "p")
    services.like(bob, post.pk)
    notes.mark_all_read(alice)
    notes.mark_seen(alice)
    last = state_of(alice).last_seq
    assert (state_of(alice).unread_count, state_of(alice).unseen_count) == (0, 0)
    services.like(carol, post.pk)
    assert (state_of(alice).unread_count, state_of(alice).unseen_count) == (1, 1)
    caught = api.as_(alice).get("/api/notifications/", {"after_seq": last}).json()
    assert [(n["kind"], n["count"], n["read"]) for n in caught["results"]] == [("like", 2, False)]
    assert caught["unseen_count"] == 1
    # A further like of an item already unread changes no count.
    services.like(services.get_user("carol"), post.pk)  # the same person again: nothing at all
    assert state_of(alice).last_seq == last + 1
    assert_count_exact(alice)


def test_a_bump_is_pushed_with_the_same_id(alice, bob, carol, memory_publisher, on_commit):
    post = services.create_post(alice, "p")
    with on_commit():
        services.like(bob, post.pk)
    with on_commit():
        services.like(carol, post.pk)
    first, second = memory_publisher.messages(type="notification")
    assert first["id"] == second["id"] and second["seq"] > first["seq"]
    assert (second["count"], second["unread_count"], second["unseen_count"]) == (2, 1, 1)
    assert second["text"] == "Carol and Bob liked your post: “p”"


def test_unlike_takes_the_actor_out_and_the_last_one_takes_the_item(api, alice, bob, carol, memory_publisher,
                                                                     on_commit):
    post = services.create_post(alice, "p")
    services.like(bob, post.pk)
    services.like(carol, post.pk)
    seq = items(api, alice)[0]["seq"]
    with on_commit():
        services.unlike(carol, post.pk)
    [item] = items(api, alice)
    assert (item["count"], item["seq"], item["actor"]["username"]) == (1, seq, "bob")  # no bump
    assert item["text"] == "Bob liked your post: “p”"
    assert memory_publisher.messages(type="notification")[-1]["count"] == 1
    assert_count_exact(alice)
    with on_commit():
        services.unlike(bob, post.pk)
    assert items(api, alice) == []
    assert not NotificationActor.objects.exists() and not PendingPush.objects.exists()
    assert (state_of(alice).unread_count, state_of(alice).unseen_count) == (0, 0)
    [removed] = memory_publisher.messages(type="removed")
    assert removed["unread_count"] == 0 and len(removed["ids"]) == 1
    assert_count_exact(alice)


def test_like_unlike_like_is_one_item_counting_one(api, alice, bob):
    post = services.create_post(alice, "p")
    for _ in range(3):
        services.like(bob, post.pk)
        services.unlike(bob, post.pk)
    services.like(bob, post.pk)
    [item] = items(api, alice)
    assert item["count"] == 1
    assert_count_exact(alice)


def test_taking_a_like_back_takes_its_event_with_it(api, alice, bob, carol, make_user):
    """Every like is an event; one taken back leaves none behind, whether its group lives on
    (pointing at the newest like left) or goes."""
    dora = make_user("dora")
    post = services.create_post(alice, "p")
    for fan in (bob, carol, dora):
        services.like(fan, post.pk)
    likes = NotificationEvent.objects.filter(kind="like", post_ref=post.pk)
    assert likes.count() == 3
    services.unlike(dora, post.pk)  # the newest: the item moves back to carol's like
    services.unlike(bob, post.pk)  # the oldest
    [item] = items(api, alice)
    assert (item["count"], item["actor"]["username"]) == (1, "carol")
    assert list(likes.values_list("actor__username", flat=True)) == ["carol"]
    services.unlike(carol, post.pk)
    assert items(api, alice) == [] and not likes.exists()
    assert_count_exact(alice)


def test_follows_are_one_item_and_unfollow_takes_the_follower_out(api, alice, bob, carol):
    services.follow(bob, "alice")
    services.follow(carol, "alice")
    [item] = items(api, alice)
    assert (item["kind"], item["count"], item["text"]) == ("follow", 2, "Carol and Bob started following you.")
    services.unfollow(carol, "alice")
    assert items(api, alice)[0]["count"] == 1
    assert_count_exact(alice)


def test_an_authors_new_posts_are_one_item_showing_the_newest(api, alice, bob, carol, on_commit):
    make_followers(alice, 3)
    services.follow(bob, "alice")
    with on_commit():
        services.create_post(alice, "first")
    with on_commit():
        newest = services.create_post(alice, "second")
    [item] = items(api, bob)
    assert (item["kind"], item["text"], item["url"]) == ("new_post", "Alice posted: “second”", newest.get_absolute_url())
    assert Notification.objects.filter(kind="new_post").count() == 4  # one per follower
    assert_count_exact(alice, bob)


def test_a_new_window_starts_a_new_item(api, alice, bob, carol, settings, monkeypatch):
    post = services.create_post(alice, "p")
    services.like(bob, post.pk)
    later = timezone.now() + timedelta(seconds=settings.NOTIFICATION_GROUP_WINDOW)
    monkeypatch.setattr(timezone, "now", lambda: later)
    services.like(carol, post.pk)
    assert [n["count"] for n in items(api, alice)] == [1, 1]
    services.unlike(bob, post.pk)  # taken out of the older item, which goes
    assert [n["actor"]["username"] for n in items(api, alice)] == ["carol"]
    assert_count_exact(alice)


def test_comments_and_mentions_are_never_grouped(api, alice, bob):
    post = services.create_post(alice, "p")
    services.add_comment(bob, post.pk, "one")
    services.add_comment(bob, post.pk, "two")
    assert [n["kind"] for n in items(api, alice)] == ["comment", "comment"]


def test_groups_list_in_a_fixed_number_of_queries(api, alice, make_user, django_assert_max_num_queries):
    for i in range(6):
        post = services.create_post(alice, f"post {i}")
        for j in range(4):
            services.like(make_user(f"fan{i}_{j}"), post.pk)
    api.as_(alice)
    with django_assert_max_num_queries(8):
        data = api.get("/api/notifications/").json()["results"]
    assert [n["count"] for n in data] == [4] * 6


# --- seen vs read -----------------------------------------------------------------------------------

def test_seen_clears_the_badge_not_the_unread_state(api, alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "p")
    services.add_comment(bob, post.pk, "c1")
    services.add_comment(bob, post.pk, "c2")
    api.as_(alice)
    assert api.get("/api/notifications/unread-count/").json() == {"unread_count": 2, "unseen_count": 2}
    with on_commit():
        r = api.post("/api/notifications/seen/")
    assert r.status_code == 200 and r.json() == {"unseen_count": 0}
    assert api.get("/api/notifications/unread-count/").json() == {"unread_count": 2, "unseen_count": 0}
    assert [n["read"] for n in items(api, alice)] == [False, False]
    [seen] = memory_publisher.messages(type="seen")
    assert seen["unseen_count"] == 0
    services.add_comment(bob, post.pk, "c3")
    assert api.get("/api/notifications/unread-count/").json() == {"unread_count": 3, "unseen_count": 1}
    assert_count_exact(alice)


def test_opening_the_notifications_page_marks_everything_seen(client, alice, bob):
    post = services.create_post(alice, "p")
    services.add_comment(bob, post.pk, "c1")
    client.force_login(alice)
    assert client.get("/notifications/").status_code == 200
    assert (state_of(alice).unseen_count, state_of(alice).unread_count) == (0, 1)


def test_seen_needs_a_login(api):
    assert api.post("/api/notifications/seen/").status_code in (401, 403)


# --- preferences ------------------------------------------------------------------------------------

def test_a_muted_kind_is_neither_stored_nor_pushed(api, alice, bob, memory_publisher, on_commit):
    api.as_(alice)
    r = api.put("/api/notifications/preferences/", {"muted_kinds": ["like", "follow"]}, format="json")
    assert r.status_code == 200
    assert {k: r.json()[k] for k in ("muted_kinds", "muted_posts")} == {"muted_kinds": ["like", "follow"], "muted_posts": []}
    post = services.create_post(alice, "p")
    with on_commit():
        services.like(bob, post.pk)
        services.follow(bob, "alice")
        services.add_comment(bob, post.pk, "still told")
    assert [n["kind"] for n in items(api, alice)] == ["comment"]
    assert [m["kind"] for m in memory_publisher.messages(type="notification")] == ["comment"]
    assert api.get("/api/notifications/preferences/").json()["muted_kinds"] == ["like", "follow"]
    assert_count_exact(alice)


def test_muting_new_posts_skips_that_follower_in_the_fanout(alice, bob, carol, on_commit):
    services.follow(bob, "alice")
    services.follow(carol, "alice")
    notes.set_preferences(bob, muted_kinds=["new_post"])
    with on_commit():
        services.create_post(alice, "hello")
    assert list(Notification.objects.filter(kind="new_post").values_list("recipient__username", flat=True)) == ["carol"]
    assert_count_exact(bob, carol)


def test_a_muted_post_tells_nobody_who_muted_it(api, alice, bob, carol):
    post = services.create_post(alice, "p")
    other = services.create_post(alice, "q")
    api.as_(alice)
    r = api.post(f"/api/posts/{post.pk}/mute/")
    assert r.status_code == 201 and r.json() == {"post": post.pk, "muted": True}
    assert api.post(f"/api/posts/{post.pk}/mute/").status_code == 200  # twice is once
    services.add_comment(bob, post.pk, "on the muted post")
    services.like(carol, post.pk)
    services.add_comment(bob, other.pk, "elsewhere")
    assert [n["text"] for n in items(api, alice)] == ["Bob commented on your post: “elsewhere”"]
    assert api.get("/api/notifications/preferences/").json()["muted_posts"] == [post.pk]
    r = api.delete(f"/api/posts/{post.pk}/mute/")
    assert r.status_code == 200 and r.json()["muted"] is False
    services.add_comment(carol, post.pk, "after unmute")
    assert items(api, alice)[0]["text"] == "Carol commented on your post: “after unmute”"
    assert_count_exact(alice)


def test_preferences_reject_bad_input_with_a_400(api, alice):
    api.as_(alice)
    for body in ({"muted_kinds": ["poke"]}, {"muted_kinds": "like"}, {"muted_posts": ["x"]}, {"muted_posts": [0]}):
        r = api.put("/api/notifications/preferences/", body, format="json")
        assert r.status_code == 400, body
    r = api.put("/api/notifications/preferences/", {"muted_posts": [3, "x"]}, format="json")
    assert r.json()["errors"] == {"muted_posts": ["Item 1: A valid integer is required."]}  # strings, per item
    assert api.post("/api/posts/999999/mute/").status_code == 404


def test_preferences_replace_only_what_they_name(api, alice):
    notes.set_preferences(alice, muted_kinds=["like"], muted_posts=[5, 7])
    api.as_(alice)
    body = api.put("/api/notifications/preferences/", {"muted_posts": [7, 9]}, format="json").json()
    assert {k: body[k] for k in ("muted_kinds", "muted_posts")} == {"muted_kinds": ["like"], "muted_posts": [7, 9]}
    assert MutedPost.objects.filter(user=alice).count() == 2
    assert notifier.muted(alice, 9) and not notifier.muted(alice, 5)


def test_a_deleted_account_leaves_every_group_it_was_in(api, alice, bob, carol, make_user):
    dave = make_user("dave", display_name="Dave")
    post = services.create_post(alice, "p")
    for fan in (bob, carol, dave):
        services.like(fan, post.pk)
    services.follow(dave, "alice")
    services.follow(bob, "alice")
    services.delete_account(dave)
    by_kind = {n["kind"]: n for n in items(api, alice)}
    assert (by_kind["like"]["count"], by_kind["like"]["text"]) == (2, "Carol and Bob liked your post: “p”")
    assert (by_kind["follow"]["count"], by_kind["follow"]["actor"]["username"]) == (1, "bob")
    services.delete_account(bob)
    assert [n["kind"] for n in items(api, alice)] == ["like"]  # the follow item had only bob left
    assert_count_exact(alice)


# --- per-channel preferences ------------------------------------------------------------------------

ALL_KINDS = ["comment", "reply", "like", "follow", "mention", "new_post"]


def test_channel_defaults_keep_likes_and_new_posts_out_of_email(api, alice):
    body = api.as_(alice).get("/api/notifications/preferences/").json()
    assert body["channels"] == {"web_push": ALL_KINDS, "email": ["comment", "reply", "follow", "mention"]}
    assert body["email_digest"] == "daily"


def test_channels_replace_only_the_lists_they_name_and_muting_wins(api, alice):
    api.as_(alice)
    r = api.put("/api/notifications/preferences/", {"channels": {"email": ["like", "mention"]}, "email_digest": "hourly"},
                format="json")
    assert r.status_code == 200
    assert r.json()["channels"] == {"web_push": ALL_KINDS, "email": ["like", "mention"]}
    assert r.json()["email_digest"] == "hourly"
    r = api.put("/api/notifications/preferences/", {"muted_kinds": ["mention"]}, format="json")
    assert r.json()["channels"] == {"web_push": ["comment", "reply", "like", "follow", "new_post"], "email": ["like"]}
    # Unmuting brings back what the user chose for each channel.
    r = api.put("/api/notifications/preferences/", {"muted_kinds": []}, format="json")
    assert r.json()["channels"]["email"] == ["like", "mention"] and r.json()["email_digest"] == "hourly"
    r = api.put("/api/notifications/preferences/", {"channels": {"web_push": []}}, format="json")
    assert r.json()["channels"] == {"web_push": [], "email": ["like", "mention"]}


def test_channel_preferences_reject_bad_input_with_a_400(api, alice):
    api.as_(alice)
    for body in ({"channels": {"email": ["poke"]}}, {"channels": {"email": "like"}}, {"channels": []},
                 {"email_digest": "weekly"}, {"email_digest": None}):
        r = api.put("/api/notifications/preferences/", body, format="json")
        assert r.status_code == 400, body
    assert api.get("/api/notifications/preferences/").json()["email_digest"] == "daily"
