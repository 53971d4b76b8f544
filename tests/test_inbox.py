"""The notification center: kind icons, the unread dot, day sections, filter tabs (page and API),
mark as unread (counts exact across the read watermark), follow back, infinite scroll, opening a
notification whose post is gone, and muted posts listed with their excerpt."""
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from feed import services
from feed.models import Follow, User
from notifier import inbox
from notifier import services as notes
from notifier.models import Notification, NotificationEvent, NotificationState
from notifier.topics import user_topic
from notifier.views import PAGE_SIZE

from .helpers import assert_count_exact, state_of

HTMX = {"HTTP_HX_REQUEST": "true"}


def rows(html: str) -> list[tuple[str, str]]:
    """(kind, id) of each row, in order."""
    return re.findall(r'<li class="notification kind-(\w+)[^"]*" data-id="(\d+)"', html)


def headings(html: str) -> list[str]:
    return re.findall(r'<li class="notification-section" data-section="\w+"><h2>([^<]+)</h2>', html)


@pytest.fixture
def busy(alice, bob, carol, on_commit):
    """Alice has one notification of each kind: comment, mention, like, follow, new_post."""
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "nice")
    services.create_post(bob, "hey @alice")
    services.like(bob, post.pk)
    services.follow(alice, "carol")
    services.follow(carol, "alice")
    with on_commit():  # the followers' fan-out runs after the commit
        services.create_post(carol, "news")
    return post


def test_each_row_has_its_kind_icon_and_the_kind_in_words(client, alice, busy):
    client.force_login(alice)
    html = client.get("/notifications/").content.decode()
    kinds = [kind for kind, _ in rows(html)]
    assert sorted(kinds) == ["comment", "follow", "like", "mention", "new_post"]
    for kind, label in [("comment", "Comment"), ("follow", "New follower"), ("like", "Like"),
                        ("mention", "Mention"), ("new_post", "New post")]:
        row = re.search(rf'<li class="notification kind-{kind}.*?</li>', html, re.S).group(0)
        assert '<span class="kind-icon"><svg class="kind-icon-svg"' in row and 'aria-hidden="true"' in row
        assert f'<span class="sr-only kind-label">{label}:</span>' in row
    # One mapping: each kind draws its own icon, and the page's template for live rows has them all.
    paths = dict(re.findall(r'<li class="notification kind-(\w+).*?<path fill="currentColor" d="([^"]+)"', html, re.S))
    assert len(set(paths.values())) == 5
    template = re.search(r'<template id="kind-icons">(.*?)</template>', html, re.S).group(1)
    for kind in ("comment", "reply", "like", "follow", "mention", "new_post"):
        assert f'data-kind="{kind}"' in template
    assert all(d in template for d in paths.values())
    reply = re.search(r'data-kind="reply".*?d="([^"]+)"', template, re.S).group(1)
    assert reply not in paths.values()  # the curved arrow, not another kind's icon


def test_unread_rows_have_a_labelled_dot_and_read_ones_do_not_show_it(client, alice, busy):
    client.force_login(alice)
    first = Notification.objects.filter(recipient=alice).order_by("seq").first()
    notes.mark_read(alice, first.pk)
    html = client.get("/notifications/").content.decode()
    unread = re.findall(r'<li class="notification kind-\w+ unread" data-id="(\d+)"', html)
    assert str(first.pk) not in unread and len(unread) == 4
    assert html.count('<span class="unread-dot" role="img" aria-label="Unread"></span>') == 5  # hidden by CSS when read


# --- Sections ------------------------------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("when, expected", [
    (datetime(2026, 3, 12, 0, 0, tzinfo=NEW_YORK), inbox.TODAY),  # midnight, local
    (datetime(2026, 3, 11, 23, 59, tzinfo=NEW_YORK), inbox.THIS_WEEK),  # a minute before
    (datetime(2026, 3, 6, 0, 0, tzinfo=NEW_YORK), inbox.THIS_WEEK),  # six days before today
    (datetime(2026, 3, 5, 23, 59, tzinfo=NEW_YORK), inbox.EARLIER),
    (datetime(2026, 3, 12, 4, 30, tzinfo=ZoneInfo("UTC")), inbox.TODAY),  # 00:30 in New York
    (datetime(2026, 3, 12, 3, 59, tzinfo=ZoneInfo("UTC")), inbox.THIS_WEEK),  # 23:59 the day before there
])
def test_sections_follow_the_calendar_of_the_time_zone(when, expected):
    now = datetime(2026, 3, 12, 0, 30, tzinfo=NEW_YORK)
    assert inbox.section_of(when, now, NEW_YORK) == expected


def test_sections_default_to_the_sites_time_zone(settings):
    now = datetime(2026, 3, 12, 3, 0, tzinfo=ZoneInfo("UTC"))  # still the 11th in New York
    evening = datetime(2026, 3, 11, 20, 0, tzinfo=ZoneInfo("UTC"))
    assert inbox.section_of(evening, now) == inbox.THIS_WEEK  # UTC: another day
    with timezone.override(NEW_YORK):
        assert inbox.section_of(evening, now) == inbox.TODAY


def test_the_page_shows_each_section_once_in_order(client, alice, busy):
    mine = list(Notification.objects.filter(recipient=alice).order_by("seq"))
    now = timezone.now()
    # Oldest first: two earlier, one this week, two today.
    for n, age in zip(mine, [timedelta(days=30), timedelta(days=9), timedelta(days=3), timedelta(0), timedelta(0)]):
        NotificationEvent.objects.filter(pk=n.event_id).update(created_at=now - age)
    client.force_login(alice)
    html = client.get("/notifications/").content.decode()
    assert headings(html) == ["Today", "This week", "Earlier"]
    sections = re.findall(r'<li class="notification kind-\w+[^"]*" data-id="\d+" data-seq="\d+" data-count="\d+" '
                          r'data-section="(\w+)"', html)
    assert sections == ["today", "today", "week", "earlier", "earlier"]


# --- Filter tabs -----------------------------------------------------------------------------------

def _stored(recipient, actor, kind, seq, text, url):
    """A notification written directly (its event first), as old or odd data would be."""
    event = NotificationEvent.objects.create(kind=kind, actor=actor, text=text, url=url)
    return Notification.objects.create(recipient=recipient, event=event, kind=kind, seq=seq)


def test_mentions_tab_lists_mentions_and_replies_only(client, alice, bob, busy):
    reply = _stored(alice, bob, "reply", 100, "Bob replied", "/posts/1/")
    NotificationState.objects.filter(pk=alice.pk).update(last_seq=100, unread_count=6, unseen_count=6)
    client.force_login(alice)
    html = client.get("/notifications/?filter=mentions").content.decode()
    assert [kind for kind, _ in rows(html)] == ["reply", "mention"] and rows(html)[0][1] == str(reply.pk)
    assert '<a href="/notifications/?filter=mentions" data-filter="mentions" aria-current="page">' in html
    assert '<ol class="notifications" id="notification-list" data-filter="mentions">' in html


def test_unread_tab_lists_what_is_unread_across_the_watermark(client, alice, carol, busy, on_commit):
    client.force_login(alice)
    notes.mark_all_read(alice)
    with on_commit():
        services.create_post(carol, "more news")  # bumps the new_post group: unread again
    kept = Notification.objects.get(recipient=alice, kind="like")
    notes.mark_unread(alice, kept.pk)  # below the watermark
    html = client.get("/notifications/?filter=unread").content.decode()
    assert sorted(kind for kind, _ in rows(html)) == ["like", "new_post"]
    assert client.get("/notifications/?filter=nonsense").status_code == 200  # any other value: All


def test_api_list_filters(api, alice, bob, busy):
    client = api.as_(alice)
    kinds = lambda r: [n["kind"] for n in r.json()["results"]]  # noqa: E731
    assert kinds(client.get("/api/notifications/?filter=mentions")) == ["mention"]
    notes.mark_read(alice, Notification.objects.get(recipient=alice, kind="comment").pk)
    assert "comment" not in kinds(client.get("/api/notifications/?filter=unread"))
    assert len(kinds(client.get("/api/notifications/?filter=all"))) == 5
    assert len(kinds(client.get("/api/notifications/?filter="))) == 5  # empty: all
    bad = client.get("/api/notifications/?filter=likes")
    assert bad.status_code == 400 and "filter" in bad.json()["errors"]


def _page_queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("tab", ["", "?filter=mentions", "?filter=unread"])
def test_each_tab_costs_the_same_queries_at_any_size(client, alice, make_user, tab):
    client.force_login(alice)
    post = services.create_post(alice, "hello")

    def add(prefix, count):
        for i in range(count):
            fan = make_user(f"{prefix}{i}")
            services.follow(fan, "alice")  # a follow item per window: one group, and a follow back
            services.add_comment(fan, post.pk, f"hi @alice {i}")  # a comment and a mention
            services.like(fan, post.pk)

    add("a", 2)
    small = _page_queries(client, f"/notifications/{tab}")
    add("b", 12)
    assert _page_queries(client, f"/notifications/{tab}") == small


def test_the_mentions_tab_uses_its_index(alice):
    """On PostgreSQL the tab's query is answered by the partial index (a test table is tiny, so
    the planner is told not to prefer reading it whole)."""
    qs = inbox.filtered(Notification.objects.for_user(alice), inbox.MENTIONS).order_by("-seq")[:31]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
        assert "notification_mentions_idx" in qs.explain()
    else:  # SQLite cannot match a partial index to bound parameters: the recipient's range at least
        assert "SEARCH notifier_notification USING INDEX" in qs.explain()


# --- Mark as unread ------------------------------------------------------------------------------

def test_mark_unread_above_the_watermark(api, alice, busy, on_commit, memory_publisher):
    like = Notification.objects.get(recipient=alice, kind="like")
    notes.mark_read(alice, like.pk)
    before = state_of(alice).unread_count
    memory_publisher.reset()
    with on_commit():
        r = api.as_(alice).post(f"/api/notifications/{like.pk}/unread/")
    assert r.status_code == 200 and r.json() == {"unread_count": before + 1}
    assert_count_exact(alice)
    [message] = memory_publisher.messages(user_topic(alice.pk), "unread")
    assert message["ids"] == [like.pk] and message["unread_count"] == before + 1
    # Idempotent: again changes nothing and tells nobody.
    memory_publisher.reset()
    with on_commit():
        assert api.as_(alice).post(f"/api/notifications/{like.pk}/unread/").json() == {"unread_count": before + 1}
    assert memory_publisher.messages(user_topic(alice.pk)) == []


def test_mark_unread_below_the_watermark_counts_it_once_and_keeps_the_rest_read(api, alice, carol, busy, on_commit):
    notes.mark_all_read(alice)
    with on_commit():
        services.create_post(carol, "later")  # one unread above the watermark
    items = list(Notification.objects.for_user(alice).order_by("seq"))
    oldest = items[0]
    assert oldest.is_read and state_of(alice).unread_count == 1
    r = api.as_(alice).post(f"/api/notifications/{oldest.pk}/unread/")
    assert r.json() == {"unread_count": 2}
    read = dict(Notification.objects.for_user(alice).values_list("pk", "read"))
    assert read[oldest.pk] is False
    assert sorted(pk for pk, is_read in read.items() if not is_read) == sorted([oldest.pk, items[-1].pk])
    assert_count_exact(alice)
    assert api.as_(alice).post(f"/api/notifications/{oldest.pk}/unread/").json() == {"unread_count": 2}
    # Mark all read still reads everything, and one by one reading it takes it back out.
    notes.mark_all_read(alice)
    assert_count_exact(alice)
    assert api.as_(alice).post(f"/api/notifications/{oldest.pk}/unread/").json() == {"unread_count": 1}
    assert api.as_(alice).post(f"/api/notifications/{oldest.pk}/read/").json()["unread_count"] == 0
    assert_count_exact(alice)


def test_mark_unread_is_own_only(api, client, alice, bob, busy):
    theirs = Notification.objects.filter(recipient=alice).first()
    before = state_of(alice).unread_count
    r = api.as_(bob).post(f"/api/notifications/{theirs.pk}/unread/")
    assert r.status_code == 404 and "detail" in r.json()
    assert api.as_(bob).post("/api/notifications/999999/unread/").status_code == 404
    client.force_login(bob)
    page = client.post(f"/notifications/{theirs.pk}/unread/")
    assert page.status_code == 404 and b"Page not found" in page.content
    assert state_of(alice).unread_count == before


def test_mark_unread_from_the_page_with_and_without_htmx(client, alice, busy):
    like = Notification.objects.get(recipient=alice, kind="like")
    notes.mark_all_read(alice)
    client.force_login(alice)
    r = client.post(f"/notifications/{like.pk}/unread/")
    assert r.status_code == 302 and r["Location"] == "/notifications/"
    assert state_of(alice).unread_count == 1
    notes.mark_read(alice, like.pk)
    r = client.post(f"/notifications/{like.pk}/unread/", **HTMX)
    html = r.content.decode()
    assert rows(html) == [("like", str(like.pk))] and f'data-id="{like.pk}"' in html
    assert re.search(rf'<li class="notification kind-like unread" data-id="{like.pk}"', html)
    assert "notification-section" not in html and "notifications-more" not in html
    r = client.post(f"/notifications/{like.pk}/read/", **HTMX)  # and back: the row, read
    assert re.search(rf'<li class="notification kind-like" data-id="{like.pk}"', r.content.decode())
    assert_count_exact(alice)


def test_mark_unread_needs_csrf(alice, busy):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    like = Notification.objects.get(recipient=alice, kind="like")
    assert client.post(f"/notifications/{like.pk}/unread/").status_code == 403


# --- Follow back ---------------------------------------------------------------------------------

def test_follow_back_only_for_people_not_followed_yet(client, alice, bob, carol, busy):
    services.follow(bob, "alice")  # joins carol's follow group: bob is its newest actor
    client.force_login(alice)
    html = client.get("/notifications/").content.decode()
    assert html.count(">Follow back</button>") == 1 and 'action="/u/bob/follow/"' in html
    assert 'id="follow-button"' not in html  # one of many on the page: no page-wide id
    services.follow(alice, "bob")
    html = client.get("/notifications/").content.decode()
    assert ">Follow back</button>" not in html


def test_follow_back_answers_htmx_with_the_button_alone(client, alice, bob):
    services.follow(bob, "alice")
    client.force_login(alice)
    r = client.post("/u/bob/follow/", {"as": "button", "next": "/notifications/"}, **HTMX)
    html = r.content.decode()
    assert r.status_code == 200 and "Unfollow" in html and "profile-stats" not in html
    assert Follow.objects.filter(follower=alice, followee=bob).exists()
    # Without JavaScript: back to the list.
    r = client.post("/u/bob/follow/", {"as": "button", "action": "unfollow", "next": "/notifications/"})
    assert r.status_code == 302 and r["Location"] == "/notifications/"


def test_follow_back_costs_one_query_for_the_whole_page(client, alice, make_user):
    client.force_login(alice)  # a follow item per follower (as in different windows)
    fans = [make_user(f"fan{i}") for i in range(3)]
    for fan in fans:
        _stored(alice, fan, "follow", fan.pk, "{actors} followed", f"/u/{fan.username}/")
    small = _page_queries(client, "/notifications/")
    for i in range(3, 10):
        fan = make_user(f"fan{i}")
        _stored(alice, fan, "follow", fan.pk, "{actors} followed", f"/u/{fan.username}/")
    assert _page_queries(client, "/notifications/") == small
    assert client.get("/notifications/").content.decode().count(">Follow back</button>") == 10


# --- Infinite scroll -----------------------------------------------------------------------------

def _many(alice, count):
    """`count` comments on alice's post, each its own notification."""
    bob = User.objects.get(username="bob")
    post = services.create_post(alice, "hello")
    for i in range(count):
        services.add_comment(bob, post.pk, f"comment {i}")


def test_the_next_page_continues_the_section_without_repeating_its_heading(client, alice, bob):
    _many(alice, PAGE_SIZE + 5)
    # The five oldest are from last week.
    oldest = Notification.objects.filter(recipient=alice).order_by("seq").values_list("pk", flat=True)[:5]
    NotificationEvent.objects.filter(pk__in=Notification.objects.filter(pk__in=list(oldest)).values("event_id")).update(
        created_at=timezone.now() - timedelta(days=2))
    client.force_login(alice)
    html = client.get("/notifications/").content.decode()
    assert headings(html) == ["Today"] and len(rows(html)) == PAGE_SIZE
    loader = re.search(r'<li class="pager notification-more" id="notifications-more" hx-get="\?([^"]+)" '
                       r'hx-trigger="revealed" hx-swap="outerHTML"><a class="button secondary" href="\?([^"]+)">Older</a>',
                       html)
    more, older = loader.group(1).replace("&amp;", "&"), loader.group(2).replace("&amp;", "&")
    assert "section=today" in more and "section" not in older
    piece = client.get(f"/notifications/?{more}", **HTMX).content.decode()
    assert "<html" not in piece and len(rows(piece)) == 5
    assert headings(piece) == ["This week"]  # Today went on from the page above: not repeated
    assert "notifications-more" not in piece
    shown = [pk for _, pk in rows(html) + rows(piece)]
    assert len(set(shown)) == PAGE_SIZE + 5
    # Without JavaScript, the link is a whole page with its own first heading.
    page = client.get(f"/notifications/?{older}").content.decode()
    assert "<html" in page and headings(page) == ["This week"] and len(rows(page)) == 5


def test_the_next_page_of_a_tab_stays_in_the_tab(client, alice, bob):
    _many(alice, PAGE_SIZE + 3)
    notes.mark_read(alice, Notification.objects.filter(recipient=alice).order_by("seq").first().pk)
    client.force_login(alice)
    html = client.get("/notifications/?filter=unread").content.decode()
    more = re.search(r'hx-get="\?([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "filter=unread" in more
    piece = client.get(f"/notifications/?{more}", **HTMX).content.decode()
    assert len(rows(piece)) == 2 and not re.search(r'kind-comment" data-id', piece)  # all unread
    assert headings(piece) == []


# --- A notification whose post is gone -----------------------------------------------------------

def test_opening_a_notification_of_a_deleted_post_says_so(client, alice, bob):
    post = services.create_post(bob, "hey @alice")
    n = Notification.objects.get(recipient=alice, kind="mention")
    client.force_login(alice)
    services.delete_post(bob, post.pk)
    r = client.post(f"/notifications/{n.pk}/read/", {"open": "1"}, follow=True)
    assert r.redirect_chain == [("/notifications/", 302)]
    assert "This post was deleted" in r.content.decode()
    # A row's htmx button: the whole list again with the notice, not the list inside the row.
    r = client.post(f"/notifications/{n.pk}/read/", **HTMX)
    assert r.status_code == 204 and r["HX-Redirect"] == "/notifications/"
    assert "This post was deleted" in client.get("/notifications/").content.decode()
    assert_count_exact(alice)


# --- Muted posts on the settings page ------------------------------------------------------------

def test_muted_posts_show_author_and_excerpt_in_one_query(client, alice, bob):
    client.force_login(alice)
    long_text = "A" * 50 + " <b>bold</b> " + "z" * 60
    posts = [services.create_post(bob, long_text), services.create_post(bob, "short one")]
    gone = services.create_post(bob, "soon gone")
    for p in posts + [gone]:
        notes.mute_post(alice, p.pk)
    services.delete_post(bob, gone.pk)
    html = client.get("/settings/notifications/").content.decode()
    assert f'<a href="/posts/{posts[0].pk}/" class="muted-post"><span class="muted-post-author">Bob</span>' in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html  # escaped
    excerpt = re.search(rf'/posts/{posts[0].pk}/".*?muted-post-excerpt">([^<]+)<', html, re.S).group(1)
    assert len(excerpt.replace("&lt;", "<").replace("&gt;", ">")) <= 80 and excerpt.endswith("…")
    assert "short one" in html and f"Post #{gone.pk} (deleted)" in html
    few = _page_queries(client, "/settings/notifications/")
    for i in range(5):
        notes.mute_post(alice, services.create_post(bob, f"more {i}").pk)
    assert _page_queries(client, "/settings/notifications/") == few
