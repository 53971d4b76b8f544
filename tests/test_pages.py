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


def test_home_is_a_landing_page_for_visitors(client):
    r = client.get("/")
    html = r.content.decode()
    assert r.status_code == 200 and "feed/landing.html" in [t.name for t in r.templates]
    assert 'href="/accounts/signup/"' in html and 'href="/accounts/login/"' in html
    assert "live notifications" in html
    r = client.post("/", {"text": "anonymous"})  # writing still needs an account
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    assert not Post.objects.exists()


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
    client.force_login(bob)  # not bob's: the same answer as for one that is gone, and nothing read
    r = client.post(f"/notifications/{n.pk}/read/", {"open": "1"}, follow=True)
    assert r.redirect_chain == [("/notifications/", 302)]
    assert "This post was deleted" in r.content.decode()
    assert Notification.objects.get(pk=n.pk).read_at is None
    client.force_login(alice)
    r = client.post(f"/notifications/{n.pk}/read/", {"open": "1"})
    assert r.status_code == 302 and r["Location"] == f"/posts/{post.pk}/#comment-{comment.pk}"
    assert Notification.objects.get(pk=n.pk).read_at is not None
    assert_count_exact(alice)
    services.delete_comment(bob, comment.pk)  # gone while alice's list was open: she is told so
    r = client.post(f"/notifications/{n.pk}/read/", {"open": "1"}, follow=True)
    assert r.redirect_chain == [("/notifications/", 302)] and "This post was deleted" in r.content.decode()


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
    for target in (5, 20):  # from 5 posts up (a shorter feed also shows who to follow)
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
    assert not Notification.objects.filter(event__post_ref=post.pk).exists()
    assert_count_exact(alice, bob)


# --- Without a page load (htmx) and without JavaScript: the same endpoints. ---

HX = {"HTTP_HX_REQUEST": "true"}


def test_without_javascript_every_form_still_redirects(client, alice, bob):
    client.force_login(bob)
    r = client.post("/", {"text": "plain form"})
    assert r.status_code == 302 and r["Location"] == "/"
    post = services.create_post(alice, "hello")
    r = client.post(f"/posts/{post.pk}/like/", {"next": "/#post-1"})
    assert r.status_code == 302 and r["Location"] == "/#post-1"
    r = client.post(f"/posts/{post.pk}/", {"text": "plain comment"})
    assert r.status_code == 302 and re.fullmatch(rf"/posts/{post.pk}/#comment-\d+", r["Location"])
    r = client.post("/u/alice/follow/")
    assert r.status_code == 302 and r["Location"] == "/u/alice/"


def test_htmx_like_answers_with_the_button(client, alice, bob):
    post = services.create_post(alice, "hello")
    client.force_login(bob)
    r = client.post(f"/posts/{post.pk}/like/", {"next": f"/#post-{post.pk}"}, **HX)
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html
    assert 'aria-pressed="true"' in html and 'aria-label="Like, 1 like"' in html
    assert '<span class="like-count">1</span>' in html and 'value="unlike"' in html
    assert f'value="/#post-{post.pk}"' in html  # the no-JS fallback still comes back here
    r = client.post(f"/posts/{post.pk}/like/", {"action": "unlike"}, **HX)
    assert 'aria-pressed="false"' in r.content.decode() and 'aria-label="Like, 0 likes"' in r.content.decode()
    assert client.post("/posts/999999/like/", **HX).status_code == 404


def test_htmx_follow_answers_with_the_button_and_the_counts(client, alice, bob):
    client.force_login(bob)
    html = client.post("/u/alice/follow/", **HX).content.decode()
    assert 'id="follow-button">Unfollow<' in html
    assert 'id="profile-stats" hx-swap-oob="true"' in html
    assert '<strong id="follower-count">1</strong> follower</a>' in html
    html = client.post("/u/alice/follow/", {"action": "unfollow"}, **HX).content.decode()
    assert 'id="follow-button">Follow<' in html and '<strong id="follower-count">0</strong> followers</a>' in html


def test_htmx_comment_answers_with_a_cleared_form_and_the_new_comment(client, alice, bob):
    post = services.create_post(alice, "hello")
    client.force_login(bob)
    r = client.post(f"/posts/{post.pk}/", {"text": "nice <b>one</b>"}, **HX)
    html = r.content.decode()
    comment = post.comments.get()
    assert r.status_code == 200 and "<html" not in html
    assert 'hx-swap-oob="beforeend:#comment-list"' in html and f'id="comment-{comment.pk}"' in html
    assert "nice &lt;b&gt;one&lt;/b&gt;" in html
    assert '<textarea name="text"' in html and "nice" not in html.split("</textarea>")[0].split("<textarea")[1]
    assert f'id="comments-link-{post.pk}"' in html and "1</span> comment</a>" in html
    # A validation error: 200 (htmx swaps it in), the text kept, the field marked and described.
    r = client.post(f"/posts/{post.pk}/", {"text": "   "}, **HX)
    html = r.content.decode()
    assert r.status_code == 200 and post.comments.count() == 1
    assert 'aria-invalid="true"' in html and 'aria-describedby="id_text-error"' in html
    assert '<p class="error" id="id_text-error"><span class="error-prefix">Error:</span> Comment cannot be empty.</p>' in html


def test_htmx_post_answers_with_a_cleared_composer_and_the_new_card(client, alice):
    client.force_login(alice)
    r = client.post("/", {"text": "hello htmx"}, **HX)
    html = r.content.decode()
    post = Post.objects.get()
    assert r.status_code == 200 and "<html" not in html
    assert 'hx-swap-oob="afterbegin:#feed"' in html and f'id="post-{post.pk}"' in html
    assert 'aria-label="Like, 0 likes"' in html
    r = client.post("/", {"text": "y" * 2001}, **HX)
    html = r.content.decode()
    assert r.status_code == 200 and Post.objects.count() == 1
    assert "Error:</span> Post is too long: 2001 characters, the limit is 2000." in html
    assert 'aria-invalid="true"' in html and "y" * 2001 in html


def test_counts_are_worded_with_plurals(client, alice, bob, carol):
    one = services.create_post(alice, "one")
    services.add_comment(bob, one.pk, "hi")
    services.like(bob, one.pk)
    services.follow(bob, "alice")
    client.force_login(carol)
    html = client.get("/u/alice/").content.decode()
    assert '<strong id="post-count">1</strong> post</span>' in html
    assert '<strong id="follower-count">1</strong> follower</a>' in html
    assert "1</span> comment</a>" in html and 'aria-label="Like, 1 like"' in html
    services.create_post(alice, "two")
    services.follow(carol, "alice")
    services.add_comment(carol, one.pk, "hey")
    services.like(carol, one.pk)
    html = client.get("/u/alice/").content.decode()
    assert '<strong id="post-count">2</strong> posts</span>' in html
    assert '<strong id="follower-count">2</strong> followers</a>' in html
    assert "2</span> comments</a>" in html and 'aria-label="Like, 2 likes"' in html
    assert "0</span> comments</a>" in html and 'aria-label="Like, 0 likes"' in html
    client.logout()
    html = client.get(f"/posts/{one.pk}/").content.decode()
    assert '<span class="sr-only"> likes</span>' in html  # anonymous: the count, no button


def test_a_comment_by_the_author_on_their_own_post_says_their_post(alice, bob):
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "first")
    services.add_comment(alice, post.pk, "thanks")  # the author comments under their own post
    assert Notification.objects.get(recipient=bob, kind="comment").text == "Alice commented on their post: “thanks”"
    carol = User.objects.create_user("carol2", password=PASSWORD, display_name="Carol")
    services.add_comment(carol, post.pk, "me too")
    texts = set(Notification.objects.filter(kind="comment", event__comment_ref__isnull=False)
                .exclude(event__text__contains="their").exclude(recipient=alice).values_list("event__text", flat=True))
    assert texts == {"Carol commented on Alice’s post: “me too”"}


@pytest.mark.parametrize("path, data, field", [
    ("/accounts/signup/", {"username": "bad name", "password1": PASSWORD, "password2": PASSWORD}, "id_username"),
    ("/accounts/login/", {"username": "alice", "password": "wrong"}, None),
])
def test_form_errors_are_tied_to_their_fields(client, alice, path, data, field):
    html = client.post(path, data).content.decode()
    if field:
        assert re.search(rf'<p class="error" id="{field}-error"><span class="error-prefix">Error:</span> ', html)
        widget = re.search(rf'<input[^>]*id="{field}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in widget and f"{field}-error" in widget
    else:  # a failed log-in is the form's error: it describes both fields
        assert '<p class="error form-error" id="login-error" role="alert"><span class="error-prefix">Error:</span>' in html
        for name in ("id_username", "id_password"):
            widget = re.search(rf'<input[^>]*id="{name}"[^>]*>', html).group(0)
            assert 'aria-invalid="true"' in widget and 'aria-describedby="login-error"' in widget


def test_profile_edit_errors_are_tied_to_their_field(client, alice):
    client.force_login(alice)
    html = client.post("/settings/profile/", {"display_name": "x" * 500, "bio": ""}).content.decode()
    assert '<p class="error" id="id_display_name-error"><span class="error-prefix">Error:</span>' in html
    assert re.search(r'<input[^>]*aria-invalid="true"[^>]*aria-describedby="id_display_name-error"', html) or \
        re.search(r'<input[^>]*aria-describedby="id_display_name-error"[^>]*aria-invalid="true"', html)


def test_the_favicon_is_served_and_linked(client):
    html = client.get("/accounts/login/").content.decode()
    assert 'rel="icon" href="/static/feed/favicon.svg" type="image/svg+xml"' in html
    assert 'href="/static/feed/favicon.png"' in html
    for path in ("/static/feed/favicon.svg", "/static/feed/favicon.png", "/static/vendor/htmx/htmx.min.js"):
        r = client.get(path)
        assert r.status_code == 200, path
        body = b"".join(r.streaming_content) if r.streaming else r.content
        assert body, path
    assert b"<svg" in b"".join(client.get("/static/feed/favicon.svg").streaming_content)
    r = client.get("/favicon.ico")  # asked for where no page names an icon
    assert (r.status_code, r["Location"]) == (301, "/static/feed/favicon.png")


def test_only_the_npm_files_pages_load_are_served_or_collected(client):
    from django.contrib.staticfiles import finders

    listed = {path for finder in finders.get_finders() for path, storage in finder.list([])
              if getattr(storage, "prefix", "") and storage.prefix.startswith("vendor/")}
    assert listed == {"mqtt.min.js", "htmx.min.js"}
    assert finders.find("vendor/htmx/htmx.min.js").endswith("node_modules/htmx.org/dist/htmx.min.js")
    assert finders.find("vendor/htmx/htmx.js") is None  # the package's other builds stay out
    assert client.get("/static/vendor/htmx/htmx.js").status_code == 404
    r = client.get("/static/vendor/mqtt/mqtt.min.js")
    assert r.status_code == 200 and b"".join(r.streaming_content)
