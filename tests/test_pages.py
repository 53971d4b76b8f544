"""The HTML site: forms, escaping, CSRF, ownership, the bell, and constant query counts."""
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from feed import services
from feed.models import Post, User
from notifier.models import Notification

from .conftest import PASSWORD
from .helpers import assert_count_exact

pytestmark = pytest.mark.django_db


def bell(response) -> int:
    match = re.search(rb'id="bell-count"[^>]*data-unread="(\d+)"', response.content)
    assert match, "the navbar has no bell"
    return int(match.group(1))


def test_sign_up_logs_in_and_lands_on_home(client):
    r = client.post("/accounts/signup/", {
        "username": "dora", "display_name": "Dora", "password1": PASSWORD, "password2": PASSWORD,
    }, follow=True)
    assert r.redirect_chain[-1][0] == "/"
    assert b"Welcome to Herald, Dora!" in r.content
    assert User.objects.filter(username="dora").exists()


@pytest.mark.parametrize("username, message", [
    ("bad name", "only letters, digits and underscores"), ("ALICE", "That username is taken."),
])
def test_sign_up_errors_show_on_the_form(client, alice, username, message):
    r = client.post("/accounts/signup/", {"username": username, "password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 200
    assert message in r.content.decode()


def test_log_in_is_case_insensitive(client, alice):
    r = client.post("/accounts/login/", {"username": "ALICE", "password": PASSWORD})
    assert r.status_code == 302 and r["Location"] == "/"


def test_home_needs_login(client):
    r = client.get("/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")


def test_posting_from_the_home_page(client, alice):
    client.force_login(alice)
    r = client.post("/", {"text": "from the page"}, follow=True)
    assert b"from the page" in r.content
    r = client.post("/", {"text": "   "})
    assert r.status_code == 200 and "Post cannot be empty." in r.content.decode()
    r = client.post("/", {"text": "y" * 2001})
    assert "Post is too long: 2001 characters, the limit is 2000." in r.content.decode()
    assert Post.objects.count() == 1


def test_user_text_is_escaped_and_mentions_link_to_profiles(client, alice, bob):
    post = services.create_post(alice, '<script>alert("x")</script> hi @bob and @nobody\nsecond line')
    services.add_comment(bob, post.pk, "<img src=x onerror=alert(1)> @alice")
    client.force_login(bob)
    html = client.get(f"/posts/{post.pk}/").content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<a class="mention" href="/u/bob/">@bob</a>' in html
    assert '<a class="mention" href="/u/alice/">@alice</a>' in html
    assert "@nobody" in html and 'href="/u/nobody/"' not in html
    assert "second line" in html and "<br>second line" in html


def test_forms_require_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/", {"text": "no token"}).status_code == 403
    assert client.post("/notifications/read-all/").status_code == 403
    page = client.get("/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    assert client.post("/", {"text": "with token", "csrfmiddlewaretoken": token}).status_code == 302
    assert Post.objects.get().text == "with token"


def test_profile_follow_and_counts(client, alice, bob):
    services.create_post(alice, "alice's post")
    client.force_login(bob)
    r = client.get("/u/alice/")
    assert b"alice&#x27;s post" in r.content and b'id="follower-count">0<' in r.content
    r = client.post("/u/alice/follow/", follow=True)
    assert b'id="follower-count">1<' in r.content and b"Unfollow" in r.content
    assert b"Bob" in client.get("/u/alice/followers/").content
    assert b"Alice" in client.get("/u/bob/following/").content
    r = client.post("/u/bob/follow/", follow=True)
    assert b"You cannot follow yourself." in r.content
    r = client.post("/u/alice/follow/", {"action": "unfollow"}, follow=True)
    assert b'id="follower-count">0<' in r.content
    assert client.get("/u/ghost/").status_code == 404


def test_comment_like_and_bell(client, alice, bob):
    post = services.create_post(alice, "hello")
    client.force_login(bob)
    r = client.post(f"/posts/{post.pk}/", {"text": "great post"}, follow=True)
    assert b"great post" in r.content
    r = client.post(f"/posts/{post.pk}/", {"text": ""})
    assert "Comment cannot be empty." in r.content.decode()
    client.post(f"/posts/{post.pk}/like/", {"next": f"/posts/{post.pk}/"})
    client.force_login(alice)
    r = client.get("/")
    assert bell(r) == 2
    r = client.get("/notifications/")
    assert "Bob commented on your post: “great post”" in r.content.decode()
    assert "Bob liked your post" in r.content.decode()
    r = client.post("/notifications/read-all/", follow=True)
    assert bell(r) == 0


def test_opening_a_notification_marks_it_read_and_goes_to_it(client, alice, bob):
    post = services.create_post(alice, "hello")
    comment = services.add_comment(bob, post.pk, "hi")
    n = Notification.objects.get(recipient=alice)
    client.force_login(bob)
    assert client.post(f"/notifications/{n.pk}/read/", {"open": "1"}).status_code == 404
    client.force_login(alice)
    r = client.post(f"/notifications/{n.pk}/read/", {"open": "1"})
    assert r.status_code == 302 and r["Location"] == f"/posts/{post.pk}/#comment-{comment.pk}"
    assert Notification.objects.get(pk=n.pk).read_at is not None
    assert_count_exact(alice)


def test_only_the_author_deletes_and_deleted_posts_leave_no_links(client, alice, bob):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "hi")
    client.force_login(bob)
    assert client.post(f"/posts/{post.pk}/delete/").status_code == 403
    client.force_login(alice)
    client.post(f"/posts/{post.pk}/delete/")
    assert client.get(f"/posts/{post.pk}/").status_code == 404
    r = client.get("/notifications/")
    assert f"/posts/{post.pk}/".encode() not in r.content
    assert bell(r) == 0


def _feed_queries(client, user):
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/")
    assert r.status_code == 200
    return len(ctx), r


def test_home_page_queries_do_not_grow_with_the_number_of_posts(client, alice, make_user):
    friends = [make_user(f"friend{i}") for i in range(3)]
    for friend in friends:
        services.follow(alice, friend.username)
    client.force_login(alice)
    counts = []
    for target in (2, 20):
        while Post.objects.count() < target:
            i = Post.objects.count()
            post = services.create_post(friends[i % 3], f"post {i} @alice @friend1")
            services.add_comment(friends[(i + 1) % 3], post.pk, "c @alice")
            services.like(friends[(i + 2) % 3], post.pk)
        n, r = _feed_queries(client, alice)
        assert r.content.count(b'class="card post"') == target
        counts.append(n)
    assert counts[0] == counts[1]


def test_admin_lists_run_a_fixed_number_of_queries(client, alice, bob, make_user):
    admin = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    urls = ["/admin/feed/post/", "/admin/feed/comment/", "/admin/feed/like/", "/admin/feed/follow/",
            "/admin/notifier/notification/"]

    def measure():
        out = []
        for url in urls:
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200, url
            out.append(len(ctx))
        return out

    post = services.create_post(alice, "one")
    services.add_comment(bob, post.pk, "c")
    services.like(bob, post.pk)
    services.follow(bob, "alice")
    few = measure()
    for i in range(8):
        fan = make_user(f"fan{i}")
        services.follow(fan, "alice")
        p = services.create_post(alice, f"post {i}")
        services.add_comment(fan, p.pk, "c")
        services.like(fan, p.pk)
    assert measure() == few
    r = client.get("/admin/notifier/notification/?kind__exact=comment&read=no&push=pending&q=fan")
    assert r.status_code == 200


def test_admin_mark_as_read_and_delete_keep_counts_exact(client, alice, bob, make_user):
    admin = make_user("root", is_staff=True, is_superuser=True)
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "one")
    services.add_comment(bob, post.pk, "two")
    other = services.create_post(bob, "bob's")
    services.like(alice, other.pk)
    client.force_login(admin)
    ids = list(Notification.objects.filter(recipient=alice).values_list("pk", flat=True))[:1]
    client.post("/admin/notifier/notification/", {"action": "mark_as_read", "_selected_action": ids})
    assert Notification.objects.filter(recipient=alice, read_at__isnull=True).count() == 1
    assert_count_exact(alice, bob)
    client.post("/admin/feed/post/", {"action": "delete_selected", "_selected_action": [post.pk], "post": "yes"})
    assert not Post.objects.filter(pk=post.pk).exists()
    assert not Notification.objects.filter(post_ref=post.pk).exists()
    assert_count_exact(alice, bob)
