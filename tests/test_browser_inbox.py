"""The notification center in real headless Chromium: kind icons, unread dots and day sections
(also on rows that arrive live), filter tabs, "Mark as unread" reaching another tab live, "Follow
back", and infinite scroll (with the plain "Older" link still working without JavaScript)."""
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Follow
from notifier import services as notes
from notifier.models import Notification, NotificationEvent, NotificationState
from notifier.views import PAGE_SIZE

from .browser import launch, log_in, logged_in_page, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5_000


def rows(page):
    return page.locator("#notification-list li.notification")


def row(page, notification):
    return page.locator(f"#notification-list li.notification[data-id='{notification.pk}']")


def icon_path(locator) -> str:
    return locator.locator(".kind-icon path").get_attribute("d")


def test_icons_dots_and_sections_on_the_page_and_on_live_rows(live_server, live_push):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "first")
    services.like(bob, post.pk)
    services.follow(carol, "alice")
    comment, like, follow = (Notification.objects.get(kind=k) for k in ("comment", "like", "follow"))
    NotificationEvent.objects.filter(pk=comment.event_id).update(created_at=timezone.now() - timedelta(days=20))
    NotificationEvent.objects.filter(pk=like.event_id).update(created_at=timezone.now() - timedelta(days=2))
    notes.mark_read(alice, like.pk)
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/notifications/")
        wait_live(page)
        expect(page.locator("#notification-list li.notification-section h2")).to_have_text(
            ["Today", "This week", "Earlier"])
        expect(rows(page)).to_have_count(3)
        for n, label in ((comment, "Comment:"), (like, "Like:"), (follow, "New follower:")):
            expect(row(page, n).locator(".kind-icon svg")).to_be_visible()
            expect(row(page, n).locator(".kind-label")).to_have_text(label)
        assert len({icon_path(row(page, n)) for n in (comment, like, follow)}) == 3
        # The dot marks unread rows (and says so); the read like has none.
        expect(row(page, follow).get_by_role("img", name="Unread")).to_be_visible()
        expect(row(page, comment).get_by_role("img", name="Unread")).to_be_visible()
        expect(row(page, like).locator(".unread-dot")).to_be_hidden()
        server_comment_icon = icon_path(row(page, comment))

        # A live comment: under Today, with the same icon as the server draws, unread.
        services.add_comment(carol, post.pk, "live one")
        live = Notification.objects.filter(kind="comment").latest("seq")
        expect(row(page, live)).to_have_count(1, timeout=TIMEOUT)
        expect(rows(page).first).to_have_attribute("data-id", str(live.pk))
        assert icon_path(row(page, live)) == server_comment_icon
        expect(row(page, live).locator(".kind-label")).to_have_text("Comment:")
        expect(row(page, live).get_by_role("img", name="Unread")).to_be_visible()
        expect(page.locator("#notification-list li.notification-section h2")).to_have_text(
            ["Today", "This week", "Earlier"])  # no second Today
        order = page.evaluate("""() => [...document.querySelectorAll('#notification-list > li')]
            .map(li => li.dataset.id ? 'row' : li.dataset.section)""")
        assert order == ["today", "row", "row", "week", "row", "earlier", "row"]

        # Follow back: htmx swaps the button, the page stays.
        expect(row(page, follow).get_by_role("button", name="Follow back Carol")).to_be_visible()
        row(page, follow).get_by_role("button", name="Follow back Carol").click()
        expect(row(page, follow).get_by_role("button", name="Unfollow Carol")).to_be_visible(timeout=TIMEOUT)
        assert Follow.objects.filter(follower=alice, followee=carol).exists()
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.close()


def test_filter_tabs(live_server):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "plain")
    services.create_post(bob, "hey @alice")
    services.like(bob, post.pk)
    notes.mark_read(alice, Notification.objects.get(kind="comment").pk)
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/notifications/")
        expect(rows(page)).to_have_count(3)
        tabs = page.get_by_role("navigation", name="Show")
        tabs.get_by_role("link", name="Mentions and replies").click()
        expect(page).to_have_url(f"{base}/notifications/?filter=mentions")
        expect(rows(page)).to_have_count(1)
        expect(rows(page).first).to_have_class("notification kind-mention unread")
        expect(tabs.get_by_role("link", name="Mentions and replies")).to_have_attribute("aria-current", "page")
        tabs.get_by_role("link", name="Unread").click()
        expect(page).to_have_url(f"{base}/notifications/?filter=unread")
        expect(rows(page)).to_have_count(2)
        expect(page.locator("#notification-list li.kind-comment")).to_have_count(0)
        tabs.get_by_role("link", name="All").click()
        expect(rows(page)).to_have_count(3)
        browser.close()


def test_the_mentions_tab_takes_only_mentions_live(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/notifications/?filter=mentions")
        wait_live(page)
        services.like(bob, post.pk)
        expect(page.locator("#bell-count")).to_have_attribute("data-unread", "1", timeout=TIMEOUT)
        services.create_post(bob, "hey @alice")
        expect(rows(page)).to_have_count(1, timeout=TIMEOUT)
        expect(rows(page).first).to_have_class("notification unread is-new kind-mention")
        expect(page.locator("#bell-count")).to_have_attribute("data-unread", "2")
        expect(page.locator("#notification-list li.kind-like")).to_have_count(0)  # not in this tab
        browser.close()


def test_mark_as_unread_reaches_the_other_tab_live(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "one")
    services.add_comment(bob, post.pk, "two")
    notes.mark_all_read(alice)
    older = Notification.objects.filter(recipient=alice).order_by("seq").first()
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        first = logged_in_page(browser, base, "alice")
        first.goto(f"{base}/notifications/")
        second = logged_in_page(browser, base, "alice")
        second.goto(f"{base}/")
        other_list = logged_in_page(browser, base, "alice")
        other_list.goto(f"{base}/notifications/")
        for tab in (first, second, other_list):
            wait_live(tab)
            expect(tab.locator("#bell-count")).to_have_attribute("data-unread", "0")

        row(first, older).get_by_role("button", name="Mark as unread").click()
        expect(row(first, older).get_by_role("img", name="Unread")).to_be_visible(timeout=TIMEOUT)
        expect(second.locator("#bell-count")).to_have_attribute("data-unread", "1", timeout=TIMEOUT)
        expect(row(other_list, older)).to_have_class("notification kind-comment unread", timeout=TIMEOUT)
        expect(row(other_list, older).get_by_role("button", name="Mark as read")).to_be_visible()
        assert NotificationState.objects.get(pk=alice.pk).unread_count == 1

        row(other_list, older).get_by_role("button", name="Mark as read").click()
        expect(first.locator("#bell-count")).to_have_attribute("data-unread", "0", timeout=TIMEOUT)
        expect(row(first, older).locator(".unread-dot")).to_be_hidden(timeout=TIMEOUT)
        expect(second.locator("#bell-count")).to_have_attribute("data-unread", "0", timeout=TIMEOUT)
        assert first.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.close()


def test_scrolling_to_the_bottom_loads_older_rows(live_server):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    for i in range(PAGE_SIZE + 6):
        services.add_comment(bob, post.pk, f"comment {i}")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/notifications/")
        expect(rows(page)).to_have_count(PAGE_SIZE)
        page.locator("#notifications-more").scroll_into_view_if_needed()
        expect(rows(page)).to_have_count(PAGE_SIZE + 6, timeout=TIMEOUT)
        expect(page.locator("#notifications-more")).to_have_count(0)
        expect(page.locator("#notification-list li.notification-section")).to_have_count(1)  # one Today
        expect(rows(page).last).to_contain_text("comment 0")
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

        # Without JavaScript the loader is a plain link to the next page.
        plain = browser.new_context(java_script_enabled=False).new_page()
        log_in(plain, base, "alice")
        plain.goto(f"{base}/notifications/")
        plain.get_by_role("link", name="Older").click()
        expect(plain).to_have_url(f"{base}/notifications/?before={Notification.objects.order_by('seq')[6].seq}")
        expect(rows(plain)).to_have_count(6)
        browser.close()
