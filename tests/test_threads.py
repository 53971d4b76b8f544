"""Replies one level deep, following a post's conversation, and edits: the API, the rules of who
is told what, the pages without JavaScript, and the live `edit` message."""
import pytest

import notifier
from feed import services
from feed.models import Comment, Post, PostFollow
from feed.text import MAX_TEXT_LENGTH
from notifier.models import Notification
from notifier.topics import post_comments_topic

from .helpers import assert_count_exact, kinds_of

pytestmark = pytest.mark.django_db


def comment(api, user, post, text, parent=None):
    data = {"text": text} if parent is None else {"text": text, "parent": parent}
    return api.as_(user).post(f"/api/posts/{post.pk}/comments/", data, format="json")


def told(comment_id) -> set:
    return set(Notification.objects.filter(event__comment_ref=comment_id).values_list("recipient__username", "kind"))


# --- Replies -------------------------------------------------------------------------------------


def test_a_reply_through_the_api_threads_under_its_comment(api, alice, bob, carol):
    post = services.create_post(alice, "hello")
    top = comment(api, bob, post, "first").json()
    assert (top["parent"], top["replies"]) == (None, 0)
    reply = comment(api, carol, post, "a reply", parent=top["id"])
    assert reply.status_code == 201, reply.content
    assert reply.json()["parent"] == top["id"]
    # A reply to a reply joins the thread of the top-level comment it is under.
    deeper = comment(api, alice, post, "and another", parent=reply.json()["id"]).json()
    assert deeper["parent"] == top["id"]
    listing = api.as_(bob).get(f"/api/posts/{post.pk}/comments/").json()["results"]
    assert [(c["id"], c["parent"], c["replies"]) for c in listing] == [
        (top["id"], None, 2), (reply.json()["id"], top["id"], 0), (deeper["id"], top["id"], 0),
    ]
    assert Post.objects.get(pk=post.pk).comments.count() == 3


@pytest.mark.parametrize("parent", ["other_post", "missing", "abc", 0, -1, 2**70])
def test_a_bad_parent_is_a_400_and_stores_nothing(api, alice, bob, parent):
    post = services.create_post(alice, "hello")
    elsewhere = services.add_comment(bob, services.create_post(bob, "other").pk, "there")
    value = {"other_post": elsewhere.pk, "missing": elsewhere.pk + 100}.get(parent, parent)
    response = comment(api, bob, post, "reply", parent=value)
    assert response.status_code == 400, response.content
    assert "parent" in response.json()["detail"] or "comment on this post" in response.json()["detail"]
    assert not Comment.objects.filter(post=post).exists()
    assert kinds_of(alice) == []


def test_the_person_replied_to_gets_a_reply_and_not_also_a_comment(alice, bob, carol):
    post = services.create_post(alice, "hello")
    top = services.add_comment(bob, post.pk, "first")  # bob follows the post now
    reply = services.add_comment(carol, post.pk, "agreed", parent_id=top.pk)
    # The post's author hears of every comment on it, replies too; its other followers (bob, here
    # as the one replied to) hear of top-level comments only.
    assert told(reply.pk) == {("bob", "reply"), ("alice", "comment")}
    assert Notification.objects.get(recipient=alice, event__comment_ref=reply.pk).text == "Carol replied on your post: “agreed”"
    n = Notification.objects.get(recipient=bob)
    assert n.text == "Carol replied to your comment: “agreed”"
    assert n.url == f"/posts/{post.pk}/#comment-{reply.pk}"
    assert_count_exact(alice, bob, carol)


def test_a_reply_to_a_reply_tells_both_people_once(alice, bob, carol, make_user):
    dave = make_user("dave")
    post = services.create_post(alice, "hello")
    top = services.add_comment(bob, post.pk, "first")
    middle = services.add_comment(carol, post.pk, "second", parent_id=top.pk)
    last = services.add_comment(dave, post.pk, "@carol @bob @alice third", parent_id=middle.pk)
    # The person replied to and the thread's starter: reply (not also mention); alice, the post's
    # author: comment (before mention, as for a top-level comment).
    assert told(last.pk) == {("carol", "reply"), ("bob", "reply"), ("alice", "comment")}
    own = services.add_comment(carol, post.pk, "talking to myself", parent_id=middle.pk)
    assert told(own.pk) == {("bob", "reply"), ("alice", "comment")}  # never yourself


def test_a_reply_to_your_own_comment_on_a_muted_post_or_muted_kind_tells_nobody(alice, bob, carol):
    post = services.create_post(alice, "hello")
    top = services.add_comment(bob, post.pk, "first")
    services.mute_post(bob, post.pk)
    services.add_comment(carol, post.pk, "muted", parent_id=top.pk)
    services.mute_post(bob, post.pk, False)
    notifier.services.set_preferences(bob, muted_kinds=["reply"])
    services.add_comment(carol, post.pk, "kind muted", parent_id=top.pk)
    assert kinds_of(bob) == []


def test_deleting_a_comment_keeps_its_replies_as_comments(api, alice, bob, carol):
    post = services.create_post(alice, "hello")
    top = services.add_comment(bob, post.pk, "first")
    reply = services.add_comment(carol, post.pk, "second", parent_id=top.pk)
    services.delete_comment(bob, top.pk)
    reply.refresh_from_db()
    assert reply.parent_id is None
    assert told(reply.pk) == {("bob", "reply"), ("alice", "comment")}  # carol's reply still exists, so does what it told
    listing = api.as_(bob).get(f"/api/posts/{post.pk}/comments/").json()["results"]
    assert [(c["id"], c["parent"]) for c in listing] == [(reply.pk, None)]


# --- Following a post ----------------------------------------------------------------------------


def test_followers_get_comments_on_top_level_comments_only_and_not_their_own(alice, bob, carol, make_user):
    dave = make_user("dave")
    post = services.create_post(alice, "hello")
    assert services.follows_post(alice, post.pk)  # the author follows their own post
    services.follow_post(dave, post.pk)
    first = services.add_comment(bob, post.pk, "first")
    assert told(first.pk) == {("alice", "comment"), ("dave", "comment")}
    assert Notification.objects.get(recipient=dave).text == "Bob commented on Alice’s post: “first”"
    second = services.add_comment(carol, post.pk, "second")
    assert told(second.pk) == {("alice", "comment"), ("dave", "comment"), ("bob", "comment")}
    assert kinds_of(carol) == []
    assert_count_exact(alice, bob, carol, dave)


def test_the_old_blanket_rule_is_gone_unfollowing_is_kept(api, alice, bob, carol):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "first")
    response = api.as_(bob).delete(f"/api/posts/{post.pk}/follow/")
    assert (response.status_code, response.json()) == (200, {"post": post.pk, "following": False})
    services.add_comment(bob, post.pk, "commenting again does not follow it again")
    assert PostFollow.objects.get(post=post, user=bob).following is False
    later = services.add_comment(carol, post.pk, "third")
    assert told(later.pk) == {("alice", "comment")}
    # The author follows their own post already, and can unfollow it too.
    assert api.as_(alice).post(f"/api/posts/{post.pk}/follow/").status_code == 200
    api.as_(alice).delete(f"/api/posts/{post.pk}/follow/")
    assert told(services.add_comment(carol, post.pk, "fourth").pk) == set()


def test_follow_and_unfollow_through_the_api_are_idempotent(api, alice, bob):
    post = services.create_post(alice, "hello")
    url = f"/api/posts/{post.pk}/follow/"
    first, again = api.as_(bob).post(url), api.as_(bob).post(url)
    assert (first.status_code, first.json()) == (201, {"post": post.pk, "following": True})
    assert (again.status_code, again.json()) == (200, {"post": post.pk, "following": True})
    assert api.as_(bob).delete(url).json()["following"] is False
    assert api.as_(bob).delete(url).status_code == 200
    assert PostFollow.objects.filter(post=post, user=bob).count() == 1
    assert api.as_(bob).post(f"/api/posts/{post.pk + 99}/follow/").status_code == 404
    assert api.as_(bob).delete(f"/api/posts/{post.pk + 99}/follow/").status_code == 404
    api.credentials()
    assert api.post(url).status_code in (401, 403)


def test_a_muted_post_silences_its_followers(alice, bob, carol):
    post = services.create_post(alice, "hello")
    services.follow_post(carol, post.pk)
    services.mute_post(carol, post.pk)
    services.add_comment(bob, post.pk, "first")
    assert kinds_of(carol) == []


# --- Edits ---------------------------------------------------------------------------------------


def test_editing_a_post_and_a_comment_through_the_api(api, alice, bob):
    post = services.create_post(alice, "hello")
    c = services.add_comment(bob, post.pk, "first")
    response = api.as_(alice).patch(f"/api/posts/{post.pk}/", {"text": "  hello again  "}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["text"] == "hello again" and response.json()["edited_at"]
    response = api.as_(bob).patch(f"/api/comments/{c.pk}/", {"text": "first, edited"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["text"], response.json()["parent"]) == ("first, edited", None)
    assert response.json()["edited_at"]
    assert api.as_(bob).get(f"/api/posts/{post.pk}/").json()["edited_at"] == api.as_(alice).get(
        f"/api/posts/{post.pk}/").json()["edited_at"]
    fresh = Comment.objects.create(post=post, author=bob, text="never edited")
    assert api.as_(bob).get(f"/api/posts/{post.pk}/comments/").json()["results"][-1]["edited_at"] is None
    assert fresh.edited_at is None


@pytest.mark.parametrize("who, target, text, status", [
    ("bob", "post", "mine now", 403),
    ("alice", "comment", "mine now", 403),
    ("alice", "missing_post", "x", 404),
    ("alice", "missing_comment", "x", 404),
    ("alice", "post", "   ", 400),
    ("bob", "comment", "", 400),
    ("alice", "post", "x" * (MAX_TEXT_LENGTH + 1), 400),
    ("alice", "post", None, 400),
    ("alice", "post", 42, 400),
])
def test_bad_edits_are_refused_with_the_right_status(api, alice, bob, who, target, text, status):
    post = services.create_post(alice, "hello")
    c = services.add_comment(bob, post.pk, "first")
    url = {"post": f"/api/posts/{post.pk}/", "comment": f"/api/comments/{c.pk}/",
           "missing_post": f"/api/posts/{post.pk + 99}/", "missing_comment": f"/api/comments/{c.pk + 99}/"}[target]
    user = {"alice": alice, "bob": bob}[who]
    response = api.as_(user).patch(url, {"text": text}, format="json")
    assert response.status_code == status, response.content
    assert response.json()["detail"]
    post.refresh_from_db()
    c.refresh_from_db()
    assert (post.text, post.edited_at, c.text, c.edited_at) == ("hello", None, "first", None)


def test_notifications_show_the_current_text_after_an_edit(api, alice, bob, carol, on_commit):
    services.follow(bob, "alice")
    with on_commit():
        post = services.create_post(alice, "hello @carol")
    services.like(bob, post.pk)
    c = services.add_comment(bob, post.pk, "nice one")
    reply = services.add_comment(carol, post.pk, "thanks", parent_id=c.pk)
    services.edit_post(alice, post.pk, "hello @carol, edited")
    services.edit_comment(bob, c.pk, "nice one, edited")
    services.edit_comment(carol, reply.pk, "thanks, edited")
    texts = {n["kind"]: n["text"] for n in api.as_(alice).get("/api/notifications/").json()["results"]}
    assert texts.pop("follow") == "Bob started following you."
    assert texts == {"comment": "Bob commented on your post: “nice one, edited”",
                     "like": "Bob liked your post: “hello @carol, edited”"}
    [mention] = api.as_(carol).get("/api/notifications/").json()["results"]
    assert mention["text"] == "Alice mentioned you in a post: “hello @carol, edited”"
    kinds = {n["kind"]: n["text"] for n in api.as_(bob).get("/api/notifications/").json()["results"]}
    assert kinds["reply"] == "Carol replied to your comment: “thanks, edited”"
    assert kinds["new_post"] == "Alice posted: “hello @carol, edited”"
    assert_count_exact(alice, bob, carol)  # an edit is not news: counts do not move


def test_a_post_edited_before_its_fan_out_reaches_its_followers_with_the_new_text(settings, alice, bob, carol):
    from feed import fanout

    from .conftest import DATABASE_TASKS

    services.follow(bob, "alice")
    services.follow(carol, "alice")
    settings.TASKS = DATABASE_TASKS  # queued, not run: the chunks run below, after the edit
    post = services.create_post(alice, "first draft")
    services.edit_post(alice, post.pk, "final text @carol")
    for after, upto in fanout.chunk_bounds(alice.pk):
        fanout.fan_out_chunk.call(post.pk, after, upto)
    assert Notification.objects.get(recipient=bob, kind="new_post").text == "Alice posted: “final text @carol”"
    assert kinds_of(carol) == ["mention"]  # newly mentioned: a mention, not also the new post
    assert_count_exact(bob, carol)


def test_an_edit_tells_only_newly_mentioned_people_once(alice, bob, carol, make_user):
    dave, erin = make_user("dave"), make_user("erin")
    post = services.create_post(alice, "hello @bob")
    c = services.add_comment(carol, post.pk, "hi @bob")
    assert told(c.pk) == {("alice", "comment"), ("bob", "mention")}
    # Already told (alice by her comment notification, bob by his mention): nobody twice.
    services.edit_comment(carol, c.pk, "hi @bob and @alice and @dave")
    assert told(c.pk) == {("alice", "comment"), ("bob", "mention"), ("dave", "mention")}
    services.edit_comment(carol, c.pk, "hi @erin")  # dave taken out...
    services.edit_comment(carol, c.pk, "hi @erin and @dave")  # ...and back in: not told again
    assert told(c.pk) == {("alice", "comment"), ("bob", "mention"), ("dave", "mention"), ("erin", "mention")}
    assert sorted(c.mentions.values_list("username", flat=True)) == ["dave", "erin"]
    services.edit_post(alice, post.pk, "hello @bob and @dave")
    services.edit_post(alice, post.pk, "hello @bob and @dave!")
    assert kinds_of(bob) == ["mention", "mention"]  # the post's and the comment's, once each
    assert kinds_of(dave) == ["mention", "mention"]
    assert Notification.objects.get(recipient=dave, event__comment_ref=None).text == \
        "Alice mentioned you in a post: “hello @bob and @dave!”"
    assert_count_exact(alice, bob, carol, dave, erin)


def test_an_edit_is_published_on_the_post_topic_with_its_seq(alice, bob, memory_publisher, on_commit):
    post = services.create_post(alice, "hello")
    with on_commit():
        c = services.add_comment(bob, post.pk, "first")
    memory_publisher.reset()
    with on_commit():
        services.edit_comment(bob, c.pk, "<i>first</i> @alice www.example.com")
        services.edit_post(alice, post.pk, "hello, edited")
    messages = memory_publisher.messages(topic=post_comments_topic(post.pk))
    c.refresh_from_db()
    post.refresh_from_db()
    assert messages == [
        {"v": 1, "type": "edit", "target": "comment", "id": c.pk, "text": "<i>first</i> @alice www.example.com",
         "mentions": ["alice"], "edited_at": c.edited_at.isoformat(), "post": post.pk, "seq": 2,
         "comment_count": 1, "like_count": 0},
        {"v": 1, "type": "edit", "target": "post", "id": post.pk, "text": "hello, edited", "mentions": [],
         "edited_at": post.edited_at.isoformat(), "post": post.pk, "seq": 3, "comment_count": 1, "like_count": 0},
    ]
    memory_publisher.reset()
    with on_commit():
        services.edit_post(alice, post.pk, "hello, edited")  # the same text: nothing changes
    assert memory_publisher.messages(topic=post_comments_topic(post.pk)) == []


def test_the_inbox_reads_in_the_same_number_of_queries_after_edits(api, alice, bob, make_user,
                                                                    django_assert_num_queries):
    post = services.create_post(alice, "hello")
    for i in range(3):
        services.edit_comment(bob, services.add_comment(bob, post.pk, f"c{i}").pk, f"c{i} edited")
    client = api.as_(alice)
    client.get("/api/notifications/")  # warm: the token's user
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as before:
        client.get("/api/notifications/")
    services.edit_comment(bob, Comment.objects.last().pk, "again")
    with django_assert_num_queries(len(before.captured_queries)):
        client.get("/api/notifications/")


# --- Pages without JavaScript -------------------------------------------------------------------


def test_reply_follow_and_edit_forms_work_without_javascript(client, alice, bob):
    post = services.create_post(alice, "hello")
    top = services.add_comment(alice, post.pk, "first")
    client.force_login(bob)
    page = client.get(f"/posts/{post.pk}/").content.decode()
    assert f'name="parent" value="{top.pk}"' in page and "csrfmiddlewaretoken" in page
    assert 'id="post-follow-button" aria-pressed="false">Follow post' in page
    response = client.post(f"/posts/{post.pk}/", {"text": "a <b>reply</b>", "parent": top.pk})
    reply = Comment.objects.get(parent=top)
    assert response.status_code == 302 and response["Location"] == reply.get_absolute_url()
    page = client.get(f"/posts/{post.pk}/").content.decode()
    # Nested under its comment, escaped; commenting followed the post.
    thread = page.split(f'id="replies-{top.pk}"')[1].split("</ol>")[0]
    assert f'id="comment-{reply.pk}"' in thread and "a &lt;b&gt;reply&lt;/b&gt;" in thread
    assert 'aria-pressed="true">Unfollow post' in page
    # A bad parent: back to the page with the error, nothing stored.
    response = client.post(f"/posts/{post.pk}/", {"text": "x", "parent": top.pk + 99}, follow=True)
    assert "You can only reply to a comment on this post." in response.content.decode()
    assert Comment.objects.count() == 2
    # Unfollow, then edit the reply on its own page.
    client.post(f"/posts/{post.pk}/follow/", {"action": "unfollow"})
    assert not services.follows_post(bob, post.pk)
    edit_page = client.get(f"/comments/{reply.pk}/edit/").content.decode()
    assert "a &lt;b&gt;reply&lt;/b&gt;</textarea>" in edit_page
    response = client.post(f"/comments/{reply.pk}/edit/", {f"comment-{reply.pk}-text": "changed <i>"})
    assert response.status_code == 302
    page = client.get(f"/posts/{post.pk}/").content.decode()
    assert "changed &lt;i&gt;" in page and '<span class="edited">edited <time' in page
    # Someone else's comment or post: 403; empty: the form with its error.
    assert client.get(f"/comments/{top.pk}/edit/").status_code == 403
    assert client.post(f"/posts/{post.pk}/edit/", {f"post-{post.pk}-text": "mine"}).status_code == 403
    response = client.post(f"/comments/{reply.pk}/edit/", {f"comment-{reply.pk}-text": "  "})
    assert response.status_code == 200 and "Comment cannot be empty." in response.content.decode()
    assert client.get(f"/comments/{reply.pk + 99}/edit/").status_code == 404


def test_htmx_reply_and_edit_answer_with_fragments(client, alice, bob):
    post = services.create_post(alice, "hello")
    top = services.add_comment(alice, post.pk, "first")
    client.force_login(bob)
    htmx = {"HTTP_HX_REQUEST": "true"}
    html = client.post(f"/posts/{post.pk}/", {"text": "threaded", "parent": top.pk}, **htmx).content.decode()
    assert f'hx-swap-oob="beforeend:#replies-{top.pk}"' in html and "threaded" in html
    assert 'class="comment-count">2<' in html
    reply = Comment.objects.get(parent=top)
    form = client.get(f"/comments/{reply.pk}/edit/", **htmx).content.decode()
    assert f'id="comment-body-{reply.pk}"' in form and "<textarea" in form and "threaded</textarea>" in form
    body = client.post(f"/comments/{reply.pk}/edit/", {f"comment-{reply.pk}-text": "@alice hi"}, **htmx).content.decode()
    assert f'id="comment-body-{reply.pk}"' in body and 'href="/u/alice/"' in body and "edited" in body
    cancel = client.get(f"/comments/{reply.pk}/edit/?cancel=1", **htmx).content.decode()
    assert "@alice" in cancel and "<textarea" not in cancel
    toggled = client.post(f"/posts/{post.pk}/follow/", {"action": "unfollow"}, **htmx).content.decode()
    assert 'id="post-follow-button" aria-pressed="false">Follow post' in toggled


def test_the_migration_makes_earlier_commenters_followers(alice, bob, carol):
    """Before follows, commenting once meant hearing of every later comment: the migration keeps that
    for conversations people were in (authors follow their own posts without a row)."""
    import importlib
    from pathlib import Path

    from django.apps import apps

    [path] = Path(__file__).resolve().parent.parent.glob("feed/migrations/*_threads.py")
    migration = importlib.import_module(f"feed.migrations.{path.stem}")
    post = services.create_post(alice, "old conversation")
    Comment.objects.create(post=post, author=bob, text="from before follows")
    Comment.objects.create(post=post, author=bob, text="twice")
    services.follow_post(carol, post.pk, False)
    migration.follow_existing(apps, None)
    assert set(PostFollow.objects.values_list("user__username", "following")) == {("bob", True), ("carol", False)}
    assert told(services.add_comment(carol, post.pk, "a new one").pk) == {("alice", "comment"), ("bob", "comment")}
