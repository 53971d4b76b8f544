"""The page's frame and deletes, in real headless Chromium: on a phone a one-row header and a bottom
tab bar whose badge moves live with the navbar's; Settings and Log out in the account menu at
every width; deleting asks in an in-page dialog and can be undone for 5 seconds (the DELETE waits
that long; leaving the page sends it at once)."""
import re
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Comment, Post
from notifier.models import Notification

from .browser import launch, log_in, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def until(predicate, what, timeout=10.0):
    """Wait for a condition on the server's side (the database), with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def box(page, selector):
    return page.locator(selector).bounding_box()


def test_phone_has_a_one_row_header_and_a_live_tab_bar(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    for n in range(8):  # a page longer than the screen: its end must not stay under the bar
        services.create_post(alice, f"post number {n}\n" * 3)
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=PHONE).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        wait_live(page)

        header = box(page, "header.nav")
        assert header["height"] <= 60, header
        centres = [box(page, s)["y"] + box(page, s)["height"] / 2
                   for s in (".brand", "#nav-search-q", "a.bell", "#account-menu summary")]
        assert max(centres) - min(centres) < 8, f"the header is not one row: {centres}"
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        tabs = page.locator("nav.tabbar a")
        expect(page.locator("nav.tabbar")).to_be_visible()
        expect(tabs).to_have_count(4)
        expect(tabs).to_have_text([re.compile("Home"), re.compile("Search"), re.compile("Notifications"),
                                   re.compile("Profile")])
        expect(page.locator("nav.tabbar a[aria-current=page]")).to_have_text("Home")
        bar = box(page, "nav.tabbar")
        assert abs(bar["y"] + bar["height"] - PHONE["height"]) <= 1 and bar["height"] >= 44, bar
        for i in range(4):
            assert tabs.nth(i).bounding_box()["height"] >= 44
        # Scrolled to the end, the last post ends above the bar.
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        last = page.locator("#feed article.post").last
        expect(last).to_be_in_viewport()
        assert last.bounding_box()["y"] + last.bounding_box()["height"] <= box(page, "nav.tabbar")["y"]

        # A notification arrives: both badges and both labels say so, without a reload.
        services.add_comment(bob, post.pk, "hi alice")
        expect(page.locator("#bell-count")).to_have_text("1", timeout=5_000)
        expect(page.locator("#tab-bell-count")).to_have_text("1")
        expect(page.locator("#tab-bell-count")).to_be_visible()
        expect(page.locator("nav.tabbar a.tab-bell")).to_have_accessible_name("Notifications 1 new")
        expect(page.locator("a.bell")).to_have_accessible_name("Notifications 1 new")

        tabs.nth(2).click()
        expect(page).to_have_url(f"{base}/notifications/")
        expect(page.locator("nav.tabbar a[aria-current=page]")).to_have_text(re.compile("Notifications"))
        expect(page.locator("#tab-bell-count")).to_be_hidden()  # seen: zero is not shown
        page.locator("nav.tabbar a", has_text="Search").click()
        expect(page).to_have_url(f"{base}/people/")
        expect(page.locator("nav.tabbar a[aria-current=page]")).to_have_text("Search")
        page.locator("nav.tabbar a", has_text="Profile").click()
        expect(page).to_have_url(f"{base}/u/alice/")
        expect(page.locator("nav.tabbar a[aria-current=page]")).to_have_text(re.compile("Profile"))
        browser.close()


def test_desktop_keeps_a_one_row_navbar_without_the_tab_bar(live_server):
    make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=DESKTOP).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        expect(page.locator("nav.tabbar")).to_be_hidden()
        assert box(page, "header.nav")["height"] <= 60
        home = page.locator(".nav-links > a", has_text="Home")
        expect(home).to_be_visible()
        expect(home).to_have_attribute("aria-current", "page")
        assert abs(box(page, "a.bell")["y"] - home.bounding_box()["y"]) < 12
        browser.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_settings_and_log_out_are_in_the_account_menu(live_server, viewport):
    make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=viewport).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        menu = page.locator("#account-menu")
        summary = menu.locator("summary")
        expect(summary).to_have_accessible_name("Account menu, Alice")
        expect(menu.locator(".menu-panel")).to_be_hidden()
        summary.click()
        expect(menu).to_have_attribute("open", "")
        panel = menu.locator(".menu-panel")
        expect(panel).to_be_visible()
        b = panel.bounding_box()
        assert b["x"] >= 0 and b["x"] + b["width"] <= viewport["width"], b
        page.keyboard.press("Escape")  # closes it, the focus back on its button
        expect(panel).to_be_hidden()
        expect(summary).to_be_focused()

        summary.click()
        panel.get_by_role("link", name="Settings", exact=True).click()
        expect(page).to_have_url(f"{base}/settings/profile/")

        page.locator("#account-menu summary").click()
        page.locator("#nav-logout button").click()  # a POST with its CSRF token
        expect(page).to_have_url(f"{base}/accounts/login/")
        expect(page.locator(".messages")).to_contain_text("You have been logged out.")
        expect(page.locator("#account-menu")).to_have_count(0)
        browser.close()


@pytest.fixture
def alice_with_liked_posts(make_user):
    """alice's two posts, each liked by bob (so alice has a notification about each)."""
    alice, bob = make_users("alice", "bob")
    posts = [services.create_post(alice, "keep me"), services.create_post(alice, "delete me")]
    for post in posts:
        services.like(bob, post.pk)
    return alice, posts


def test_delete_asks_in_a_dialog_and_undo_keeps_the_post(live_server, alice_with_liked_posts):
    alice, (kept, deleted) = alice_with_liked_posts
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=PHONE).new_page()
        deletes = []
        page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
        page.clock.install()  # the 5 seconds run on the test's clock (fast_forward), not a sleep
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        card = page.locator(f"#post-{kept.pk}")
        delete = card.get_by_role("button", name="Delete")
        dialog = page.locator("#delete-dialog")

        # Escape cancels; the focus stays in the dialog while it is open and comes back after.
        delete.click()
        expect(dialog).to_be_visible()
        expect(page.get_by_role("dialog", name="Delete this post?")).to_be_visible()
        expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
        for _ in range(3):
            page.keyboard.press("Tab")
            assert page.evaluate("document.getElementById('delete-dialog').contains(document.activeElement)")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(card).to_be_visible()
        expect(delete).to_be_focused()

        # Confirmed: the post goes from the page, "Post deleted · Undo"; Undo brings it back.
        delete.click()
        dialog.get_by_role("button", name="Delete").click()
        expect(card).to_be_hidden()
        bar = page.locator("#undo-bar")
        expect(bar).to_have_text(re.compile(r"Post deleted\s*·\s*Undo"))
        expect(bar.get_by_role("button", name="Undo")).to_be_focused()
        bar.get_by_role("button", name="Undo").click()
        expect(card).to_be_visible()
        expect(bar).to_be_empty()
        page.clock.fast_forward(10_000)  # well past the window
        # Asked after the window, the server still has it, and no DELETE was ever sent.
        assert page.evaluate(f"fetch('/api/posts/{kept.pk}/').then(r => r.status)") == 200
        assert deletes == []
        assert Post.objects.filter(pk=kept.pk).exists()
        assert Notification.objects.filter(recipient=alice, event__post_ref=kept.pk).count() == 1

        # Confirmed and left alone: deleted after 5 s, with its notification, as any delete.
        other = page.locator(f"#post-{deleted.pk}")
        other.get_by_role("button", name="Delete").click()
        dialog.get_by_role("button", name="Delete").click()
        expect(other).to_be_hidden()
        page.clock.fast_forward(4_000)
        assert page.evaluate(f"fetch('/api/posts/{deleted.pk}/').then(r => r.status)") == 200  # not yet
        assert deletes == []
        page.clock.fast_forward(1_100)
        expect(other).to_have_count(0, timeout=30_000)  # once the DELETE is answered: a busy server may take a while
        expect(page.locator("#undo-bar")).to_be_empty()
        assert deletes == [f"{base}/api/posts/{deleted.pk}/"]
        until(lambda: not Post.objects.filter(pk=deleted.pk).exists(), "the post to be deleted")
        assert not Notification.objects.filter(event__post_ref=deleted.pk).exists()
        assert Post.objects.filter(pk=kept.pk).exists()
        browser.close()


def test_leaving_the_page_sends_the_waiting_delete(live_server, alice_with_liked_posts):
    alice, (_, post) = alice_with_liked_posts
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        page.locator(f"#post-{post.pk}").get_by_role("button", name="Delete").click()
        page.locator("#delete-dialog-confirm").click()
        expect(page.locator("#undo-bar")).to_contain_text("Post deleted")
        # Within the 5 seconds, away from Herald: SQLite's in-memory test database would refuse the
        # DELETE while a next page of Herald reads the same tables (PostgreSQL waits instead).
        page.goto("about:blank")
        until(lambda: not Post.objects.filter(pk=post.pk).exists(), "the post to be deleted on leaving")
        assert not Notification.objects.filter(event__post_ref=post.pk).exists()
        browser.close()


def test_deleting_a_post_on_its_page_goes_home(live_server, alice_with_liked_posts):
    alice, (_, post) = alice_with_liked_posts
    bob_comment = services.add_comment(alice, post.pk, "a comment under it")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        page.clock.install()
        log_in(page, base, "alice")
        page.goto(f"{base}/posts/{post.pk}/")
        page.locator(f"#post-{post.pk}").get_by_role("button", name="Delete").click()
        page.locator("#delete-dialog-confirm").click()
        expect(page.locator("#comments")).to_be_hidden()  # the post's page shows nothing of it
        expect(page.locator("#mute-form")).to_be_hidden()
        page.clock.fast_forward(5_100)
        expect(page).to_have_url(f"{base}/")
        until(lambda: not Post.objects.filter(pk=post.pk).exists(), "the post to be deleted")
        assert not Comment.objects.filter(pk=bob_comment.pk).exists()
        browser.close()


def test_without_javascript_the_delete_form_still_posts(live_server, alice_with_liked_posts):
    _, (_, post) = alice_with_liked_posts
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(java_script_enabled=False).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/u/alice/")
        page.locator(f"#post-{post.pk}").get_by_role("button", name="Delete").click()
        expect(page.locator(".messages")).to_contain_text("Post deleted.")
        assert not Post.objects.filter(pk=post.pk).exists()
        browser.close()
