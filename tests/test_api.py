"""The HTTP API: happy paths, every bad input with its status and message, and ownership."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feed import services
from notifier import services as notifier_services
from notifier.models import Notification

from .conftest import PASSWORD
from .helpers import assert_count_exact

pytestmark = pytest.mark.django_db


# --- accounts and tokens -------------------------------------------------------------------

def test_sign_up_then_get_a_token(api):
    r = api.post("/api/users/", {"username": "dora", "password": PASSWORD, "display_name": "Dora"}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json() == {"username": "dora", "display_name": "Dora"}
    r = api.post("/api/token/", {"username": "DORA", "password": PASSWORD}, format="json")
    assert r.status_code == 200 and len(r.json()["token"]) == 40


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"username": "x y", "password": PASSWORD}, "username", "letters, digits and underscores"),
        ({"username": "alice", "password": PASSWORD}, "username", "taken"),
        ({"username": "ALICE", "password": PASSWORD}, "username", "taken"),
        ({"username": "newbie", "password": "123"}, "password", "too short"),
        ({"password": PASSWORD}, "username", "required"),
    ],
)
def test_sign_up_errors(api, alice, body, field, message):
    r = api.post("/api/users/", body, format="json")
    assert r.status_code == 400
    data = r.json()
    assert field in data["errors"]
    assert message in data["detail"]


def test_wrong_password_gets_400_with_a_message(api, alice):
    r = api.post("/api/token/", {"username": "alice", "password": "nope"}, format="json")
    assert r.status_code == 400
    assert "Unable to log in" in r.json()["detail"]


# --- authentication --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "method, url",
    [("get", "/api/feed/"), ("post", "/api/posts/"), ("get", "/api/notifications/"),
     ("get", "/api/notifications/unread-count/"), ("post", "/api/notifications/read-all/"),
     ("post", "/api/users/alice/follow/")],
)
def test_unauthenticated_gets_401(api, alice, method, url):
    r = getattr(api, method)(url)
    assert r.status_code == 401
    assert r.json()["detail"] == "Authentication credentials were not provided."


def test_bad_token_gets_401(api, alice):
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    r = api.get("/api/feed/")
    assert r.status_code == 401 and r.json()["detail"] == "Invalid token."


def test_session_auth_requires_csrf(alice):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    r = client.post("/api/posts/", {"text": "hi"}, format="json")
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]


# --- posts -----------------------------------------------------------------------------------

def test_create_get_and_delete_a_post(api, alice, bob):
    api.as_(alice)
    r = api.post("/api/posts/", {"text": "  hello @bob  "}, format="json")
    assert r.status_code == 201, r.json()
    post = r.json()
    assert post["text"] == "hello @bob"
    assert post["author"] == {"username": "alice", "display_name": "Alice", "avatar": None}
    assert post["mentions"] == ["bob"]
    assert (post["comment_count"], post["like_count"], post["liked"]) == (0, 0, False)
    assert post["url"] == f"/posts/{post['id']}/"
    assert api.get(f"/api/posts/{post['id']}/").json()["id"] == post["id"]
    api.as_(bob)
    assert api.delete(f"/api/posts/{post['id']}/").status_code == 403
    api.as_(alice)
    assert api.delete(f"/api/posts/{post['id']}/").status_code == 204
    assert api.get(f"/api/posts/{post['id']}/").status_code == 404


@pytest.mark.parametrize(
    "body, message",
    [
        ({"text": ""}, "Post cannot be empty."),
        ({"text": "   \n\t "}, "Post cannot be empty."),
        ({"text": "x" * 2001}, "Post is too long: 2001 characters, the limit is 2000."),
        ({}, "Post text is required."),
        ({"text": None}, "Post cannot be empty."),
        ({"text": ["a", "b"]}, "Post text must be a string."),
        ({"text": 0}, "Post text must be a string."),
    ],
)
def test_bad_post_text_gets_400(api, alice, body, message):
    r = api.as_(alice).post("/api/posts/", body, format="json")
    assert r.status_code == 400
    assert r.json()["detail"] == f"text: {message}"
    assert r.json()["errors"] == {"text": [message]}


def test_2000_characters_is_fine(api, alice):
    assert api.as_(alice).post("/api/posts/", {"text": "é" * 2000}, format="json").status_code == 201


def test_malformed_json_gets_400(api, alice):
    r = api.as_(alice).post("/api/posts/", data='{"text": ', content_type="application/json")
    assert r.status_code == 400
    assert "JSON parse error" in r.json()["detail"]


def test_unknown_post_gets_404(api, alice):
    api.as_(alice)
    for method, url in [("get", "/api/posts/999/"), ("delete", "/api/posts/999/"),
                        ("get", "/api/posts/999/comments/"), ("post", "/api/posts/999/comments/"),
                        ("post", "/api/posts/999/like/"), ("delete", "/api/posts/999/like/")]:
        body = {"text": "hi"} if method == "post" else None
        r = getattr(api, method)(url, body, format="json")
        assert r.status_code == 404, (method, url, r.content)
        assert "not found" in r.json()["detail"].lower()


def test_unknown_api_path_answers_json_404(api, alice):
    r = api.as_(alice).get("/api/nothing-here/")
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}


# --- comments and likes ----------------------------------------------------------------------

def test_comment_and_like_through_the_api(api, alice, bob):
    post = services.create_post(alice, "hello")
    api.as_(bob)
    r = api.post(f"/api/posts/{post.pk}/comments/", {"text": "nice"}, format="json")
    assert r.status_code == 201
    comment = r.json()
    assert comment["post"] == post.pk and comment["author"]["username"] == "bob"
    assert comment["url"] == f"/posts/{post.pk}/#comment-{comment['id']}"
    assert api.post(f"/api/posts/{post.pk}/comments/", {"text": " "}, format="json").status_code == 400
    assert api.get(f"/api/posts/{post.pk}/comments/").json()["results"][0]["text"] == "nice"

    r = api.post(f"/api/posts/{post.pk}/like/")
    assert r.status_code == 201 and r.json() == {"post": post.pk, "liked": True, "like_count": 1}
    r = api.post(f"/api/posts/{post.pk}/like/")
    assert r.status_code == 200 and r.json()["like_count"] == 1
    got = api.get(f"/api/posts/{post.pk}/").json()
    assert (got["comment_count"], got["like_count"], got["liked"]) == (1, 1, True)
    r = api.delete(f"/api/posts/{post.pk}/like/")
    assert r.json() == {"post": post.pk, "liked": False, "like_count": 0}

    assert api.as_(alice).delete(f"/api/comments/{comment['id']}/").status_code == 403
    assert api.as_(bob).delete(f"/api/comments/{comment['id']}/").status_code == 204
    assert api.delete(f"/api/comments/{comment['id']}/").status_code == 404


# --- follows ---------------------------------------------------------------------------------

def test_follow_unfollow_and_errors(api, alice, bob):
    api.as_(bob)
    r = api.post("/api/users/alice/follow/")
    assert r.status_code == 201 and r.json() == {"username": "alice", "following": True, "created": True}
    assert api.post("/api/users/alice/follow/").status_code == 200
    profile = api.get("/api/users/alice/").json()
    assert (profile["follower_count"], profile["followed_by_me"]) == (1, True)
    r = api.post("/api/users/bob/follow/")
    assert r.status_code == 400 and r.json()["detail"] == "You cannot follow yourself."
    r = api.post("/api/users/ghost/follow/")
    assert r.status_code == 404 and r.json()["detail"] == "User not found."
    assert api.delete("/api/users/alice/follow/").status_code == 204
    assert api.get("/api/users/alice/").json()["follower_count"] == 0


# --- the home feed -------------------------------------------------------------------------

def test_feed_is_own_and_followed_posts_newest_first_with_cursor_pages(api, alice, bob, carol):
    services.follow(alice, "bob")
    mine = services.create_post(alice, "mine")
    bobs = [services.create_post(bob, f"bob {i}") for i in range(3)]
    services.create_post(carol, "not followed")
    api.as_(alice)
    page1 = api.get("/api/feed/?page_size=2").json()
    assert [p["text"] for p in page1["results"]] == ["bob 2", "bob 1"]
    page2 = api.get(page1["next"]).json()
    assert [p["id"] for p in page2["results"]] == [bobs[0].pk, mine.pk]
    assert page2["next"] is None
    assert "offset" not in page1["next"]


def _seed_feed(make_user, alice, count):
    friends = [make_user(f"friend{i}") for i in range(3)]
    for friend in friends:
        services.follow(alice, friend.username)
    for i in range(count):
        post = services.create_post(friends[i % 3], f"post {i} @alice @friend0")
        services.add_comment(friends[(i + 1) % 3], post.pk, "comment")
        services.like(friends[(i + 2) % 3], post.pk)


def _queries_for(api, url):
    with CaptureQueriesContext(connection) as ctx:
        r = api.get(url)
    assert r.status_code == 200
    return len(ctx), r.json()


def test_feed_query_count_does_not_grow_with_page_size(api, alice, make_user):
    _seed_feed(make_user, alice, 30)
    api.as_(alice)
    small, page = _queries_for(api, "/api/feed/?page_size=3")
    large, big_page = _queries_for(api, "/api/feed/?page_size=30")
    assert len(page["results"]) == 3 and len(big_page["results"]) == 30
    assert small == large
    assert all(p["comment_count"] == 1 and p["like_count"] == 1 for p in big_page["results"])


# --- notifications ---------------------------------------------------------------------------

@pytest.fixture
def inbox(alice, bob):
    """alice has five notifications from bob (seq 1..5)."""
    post = services.create_post(alice, "hello")
    for i in range(5):
        services.add_comment(bob, post.pk, f"comment {i}")
    return list(Notification.objects.filter(recipient=alice).order_by("seq"))


def test_list_notifications(api, alice, inbox):
    data = api.as_(alice).get("/api/notifications/").json()
    assert [n["seq"] for n in data["results"]] == [5, 4, 3, 2, 1]
    first = data["results"][-1]
    assert set(first) == {"id", "seq", "kind", "actor", "actors", "count", "text", "url", "created_at", "read"}
    assert first["actor"] == {"username": "bob", "display_name": "Bob", "avatar": None}
    assert first["read"] is False


def test_listed_items_are_what_the_declared_fields_give(api, alice, bob, carol, make_user):
    """The list builds each item in one step (NotificationSerializer.to_representation): the same
    dict DRF's walk over the declared fields gives, for single items, groups of two and of three,
    read and unread ones, an actor with an avatar and one whose account is gone."""
    from feed.models import User
    from notifier.serializers import NotificationSerializer

    User.objects.filter(pk=carol.pk).update(avatar="a1b2c3")
    dora = make_user("dora")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "a <b>comment</b>")
    for fan in (bob, carol, dora):
        services.like(fan, post.pk)
    for fan in (carol, dora):
        services.follow(fan, "alice")
    services.add_comment(dora, post.pk, "from dora")
    services.delete_account(User.objects.get(pk=dora.pk))
    api.as_(alice).post(f"/api/notifications/{Notification.objects.filter(recipient=alice).order_by('seq').first().pk}/read/")
    listed = api.get("/api/notifications/").json()["results"]
    assert {n["kind"] for n in listed} == {"comment", "like", "follow"} and any(n["count"] > 1 for n in listed)
    assert any(n["actor"]["avatar"] for n in listed) and any(n["read"] for n in listed)

    from notifier import groups
    page = groups.attach_actors(Notification.objects.for_user(alice).select_related("event__actor").order_by("-seq"))
    serializer = NotificationSerializer(page, many=True)
    generic = [super(NotificationSerializer, serializer.child).to_representation(n) for n in page]
    assert [dict(item) for item in generic] == listed == serializer.data


def test_unread_filter_and_mark_read(api, alice, inbox):
    api.as_(alice)
    r = api.post(f"/api/notifications/{inbox[0].pk}/read/")
    assert r.status_code == 200 and r.json() == {"marked": 1, "unread_count": 4}
    unread = api.get("/api/notifications/?unread=true").json()["results"]
    assert [n["seq"] for n in unread] == [5, 4, 3, 2]
    assert api.get("/api/notifications/unread-count/").json() == {"unread_count": 4, "unseen_count": 5}
    r = api.post("/api/notifications/read-all/")
    assert r.json() == {"marked": 4, "unread_count": 0}
    assert api.get("/api/notifications/?unread=true").json()["results"] == []
    assert_count_exact(alice)


def test_after_seq_returns_exactly_what_was_missed_in_order(api, alice, inbox):
    data = api.as_(alice).get("/api/notifications/?after_seq=2").json()
    assert [n["seq"] for n in data["results"]] == [3, 4, 5]
    assert (data["next"], data["last_seq"], data["unread_count"]) == (None, 5, 5)
    assert api.get("/api/notifications/?after_seq=5").json()["results"] == []


def test_after_seq_pages_when_much_was_missed(api, alice, inbox, monkeypatch):
    from notifier import api as notifier_api

    monkeypatch.setattr(notifier_api, "CATCH_UP_LIMIT", 2)
    api.as_(alice)
    data = api.get("/api/notifications/?after_seq=0").json()
    assert [n["seq"] for n in data["results"]] == [1, 2]
    data = api.get(data["next"]).json()
    assert [n["seq"] for n in data["results"]] == [3, 4]


def test_a_catch_up_with_nothing_new_is_one_primary_key_read_and_then_304(api, alice, inbox, django_assert_num_queries):
    api.force_authenticate(alice)  # what the view costs, without the authentication's own lookups
    with django_assert_num_queries(1):
        r = api.get("/api/notifications/?after_seq=5")
    assert r.status_code == 200
    assert r.json() == {"results": [], "next": None, "last_seq": 5, "unread_count": 5, "unseen_count": 5}
    tag = r["ETag"]
    assert tag.startswith('W/"')
    assert "private" in r["Cache-Control"] and "no-cache" in r["Cache-Control"]
    assert "Cookie" in r["Vary"] and "Authorization" in r["Vary"]
    with django_assert_num_queries(1) as captured:
        again = api.get("/api/notifications/?after_seq=5", HTTP_IF_NONE_MATCH=tag)
    assert again.status_code == 304 and again.content == b""
    (query,) = [q["sql"] for q in captured.captured_queries]
    assert set(re.findall(r'"(notifier_\w+)"', query)) == {"notifier_notificationstate"}  # not the notifications
    assert again["ETag"] == tag
    # Any of several tags, weak or strong, the same way.
    assert api.get("/api/notifications/?after_seq=5", HTTP_IF_NONE_MATCH=f'"x", {tag[2:]}').status_code == 304


def test_the_catch_up_tag_changes_with_everything_the_answer_shows(api, alice, bob, inbox):
    api.force_authenticate(alice)
    url = "/api/notifications/?after_seq=5"

    def tag():
        return api.get(url)["ETag"]

    seen = {tag()}
    steps = [
        lambda: notifier_services.mark_read(alice, inbox[0].pk),  # unread_count
        lambda: notifier_services.mark_seen(alice),  # seen_seq, unseen_count
        lambda: notifier_services.mark_all_read(alice),  # read_seq, unread_count
    ]
    for step in steps:
        before = tag()
        step()
        after = tag()
        assert after != before and after not in seen
        assert api.get(url, HTTP_IF_NONE_MATCH=before).status_code == 200
        assert api.get(url, HTTP_IF_NONE_MATCH=after).status_code == 304
        seen.add(after)
    # Something new: the same question now lists it, in full, without a tag to match.
    stale = tag()
    services.add_comment(bob, inbox[0].post_ref, "news")
    r = api.get(url, HTTP_IF_NONE_MATCH=stale)
    assert r.status_code == 200 and [n["seq"] for n in r.json()["results"]] == [6]
    assert "ETag" not in r
    # …and from the new seq on, a new tag.
    assert api.get("/api/notifications/?after_seq=6", HTTP_IF_NONE_MATCH=stale).status_code == 200
    # Another question (the unread filter) never matches this one's tag.
    assert api.get(url.replace("?", "?unread=true&"), HTTP_IF_NONE_MATCH=stale).status_code == 200


def test_a_catch_up_tag_never_answers_for_another_user(api, alice, bob, inbox):
    api.force_authenticate(bob)
    bobs = api.get("/api/notifications/?after_seq=0")
    assert bobs.status_code == 200 and bobs.json()["results"] == []
    api.force_authenticate(alice)
    r = api.get("/api/notifications/?after_seq=0", HTTP_IF_NONE_MATCH=bobs["ETag"])
    assert r.status_code == 200 and len(r.json()["results"]) == 5


def test_a_user_without_a_state_row_catches_up_to_zero(api, bob):
    api.force_authenticate(bob)
    r = api.get("/api/notifications/?after_seq=0")
    assert r.status_code == 200 and r.json()["last_seq"] == 0
    assert api.get("/api/notifications/?after_seq=0", HTTP_IF_NONE_MATCH=r["ETag"]).status_code == 304


@pytest.mark.parametrize("query", ["after_seq=abc", "after_seq=-1", "unread=maybe"])
def test_bad_notification_query_gets_400(api, alice, query):
    r = api.as_(alice).get(f"/api/notifications/?{query}")
    assert r.status_code == 400 and r.json()["detail"]


def test_a_user_never_sees_or_changes_someone_elses_notifications(api, alice, bob, inbox):
    api.as_(bob)
    assert api.get("/api/notifications/").json()["results"] == []
    assert api.get("/api/notifications/?after_seq=0").json()["results"] == []
    r = api.post(f"/api/notifications/{inbox[0].pk}/read/")
    assert r.status_code == 404 and r.json()["detail"] == "Notification not found."
    api.post("/api/notifications/read-all/")
    assert Notification.objects.filter(recipient=alice, read_at__isnull=True).count() == 5
    assert api.as_(alice).get("/api/notifications/unread-count/").json() == {"unread_count": 5, "unseen_count": 5}


def test_unknown_notification_gets_404(api, alice):
    assert api.as_(alice).post("/api/notifications/999/read/").status_code == 404


# --- throttling and docs ---------------------------------------------------------------------

def test_writes_are_throttled(api, alice, monkeypatch):
    from config.throttles import WriteThrottle

    monkeypatch.setattr(WriteThrottle, "THROTTLE_RATES", {"write": "3/min"})
    api.as_(alice)
    codes = [api.post("/api/posts/", {"text": f"p{i}"}, format="json").status_code for i in range(4)]
    assert codes == [201, 201, 201, 429]
    r = api.post("/api/posts/", {"text": "again"}, format="json")
    assert "throttled" in r.json()["detail"].lower()
    assert api.get("/api/posts/").status_code == 200  # reads are not counted


def test_signup_is_throttled(api, monkeypatch):
    from config.throttles import SignupThrottle

    monkeypatch.setattr(SignupThrottle, "THROTTLE_RATES", {"signup": "2/hour"})
    codes = [
        api.post("/api/users/", {"username": f"u{i}", "password": PASSWORD}, format="json").status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]


def test_openapi_schema_and_swagger_ui(client):
    r = client.get("/api/schema/")
    assert r.status_code == 200
    body = r.content.decode()
    for path in ["/api/feed/", "/api/notifications/", "/api/notifications/read-all/", "/api/users/{username}/follow/"]:
        assert path in body
    r = client.get("/api/docs/")
    assert r.status_code == 200 and b"swagger" in r.content.lower()
