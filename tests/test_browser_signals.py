"""One signal per event, and a badge that clears, in real headless Chromium against the local
emulator: opening a post clears the badge in another tab, a toast opens its notification through
the mark-read URL, a grouped item's toast changes in place, and a followed author's new post on
the home page shows the banner and no toast."""

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from notifier.models import Kind, Notification

from .browser import launch, log_in, logged_in_page, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10_000

# Records every toast as it is added (toasts remove themselves after a while), and keeps them up
# for the test's length, so what a test sees does not depend on how fast the machine is.
RECORD_TOASTS = """
  window.heraldLiveOptions = {toastMs: 600000};
  window.__toasts = [];
  new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach((node) => {
    if (node.classList && node.classList.contains("toast")) window.__toasts.push(node.textContent);
  }))).observe(document, {childList: true, subtree: true});
"""


def toasts_added(page) -> list[str]:
    return page.evaluate("window.__toasts")


def test_opening_a_post_clears_the_badge_in_another_tab(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "read me")
    other = services.create_post(alice, "not this one")
    services.add_comment(bob, post.pk, "one")
    services.like(bob, post.pk)
    services.add_comment(bob, other.pk, "elsewhere")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context()
        first = context.new_page()
        log_in(first, base, "alice")
        second = context.new_page()
        second.goto(f"{base}/")
        wait_live(second)
        bell = second.locator("#bell-count")
        expect(bell).to_have_text("3")
        expect(bell).to_have_attribute("data-unread", "3")

        first.goto(f"{base}/posts/{post.pk}/")
        expect(first.locator("#bell-count")).to_be_hidden()  # rendered after the marks
        # The other tab hears it: nothing unseen, and only the other post's comment unread.
        expect(bell).to_have_attribute("data-unseen", "0", timeout=TIMEOUT)
        expect(bell).to_have_attribute("data-unread", "1", timeout=TIMEOUT)
        expect(bell).to_be_hidden()
        unread = Notification.objects.filter(recipient=alice, read_at__isnull=True)
        assert list(unread.values_list("event__post_ref", flat=True)) == [other.pk]
        browser.close()


def test_clicking_a_toast_marks_its_notification_read_and_opens_it(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.add_init_script(RECORD_TOASTS)
        page.goto(f"{base}/notifications/")
        wait_live(page)

        services.follow(bob, "alice")  # about a profile, not a post: only the toast can read it
        toast = page.locator("#toasts .toast", has_text="Bob started following you")
        expect(toast).to_be_visible(timeout=TIMEOUT)
        [item] = Notification.objects.filter(recipient=alice, kind=Kind.FOLLOW)
        assert item.read_at is None
        toast.locator("a").click()

        page.wait_for_url(f"{base}/u/bob/", timeout=TIMEOUT)
        item.refresh_from_db()
        assert item.read_at is not None
        expect(page.locator("#bell-count")).to_have_attribute("data-unread", "0", timeout=TIMEOUT)
        browser.close()


def test_a_grouped_items_toast_changes_in_place(live_server, live_push):
    alice, bob, carol, dave = make_users("alice", "bob", "carol", "dave")
    post = services.create_post(alice, "likeable")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.add_init_script(RECORD_TOASTS)
        page.goto(f"{base}/notifications/")
        wait_live(page)
        shown = page.locator("#toasts .toast")

        services.like(bob, post.pk)
        expect(shown).to_have_count(1, timeout=TIMEOUT)
        expect(shown).to_contain_text("Bob liked your post")
        services.like(carol, post.pk)
        expect(shown).to_contain_text("Carol and Bob liked your post", timeout=TIMEOUT)
        services.like(dave, post.pk)
        expect(shown).to_contain_text("Dave and 2 others liked your post", timeout=TIMEOUT)
        expect(shown).to_have_count(1)
        assert len(toasts_added(page)) == 1  # one toast, changed twice: never a second one

        # Something else is news of its own.
        services.add_comment(bob, post.pk, "and a comment")
        expect(shown).to_have_count(2, timeout=TIMEOUT)
        expect(shown.last).to_contain_text("Bob commented on your post")
        browser.close()


def test_a_followed_authors_new_post_on_the_home_page_shows_only_the_banner(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    services.follow(alice, "bob")
    mine = services.create_post(alice, "my own post")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.add_init_script(RECORD_TOASTS)
        page.goto(f"{base}/")
        wait_live(page)
        bell = page.locator("#bell-count")
        expect(bell).to_have_attribute("data-unseen", "0")

        services.create_post(bob, "news from bob")
        expect(page.locator("#new-posts-button")).to_have_text("1 new post", timeout=TIMEOUT)
        expect(bell).to_have_attribute("data-unseen", "1", timeout=TIMEOUT)  # the bell still counts it
        # The banner and a toast would come from the same message: the banner is up, so no toast came.
        assert toasts_added(page) == []

        # Other news on the home page still gets its toast (so the check above can fail).
        services.add_comment(bob, mine.pk, "nice")
        expect(page.locator("#toasts .toast")).to_contain_text("Bob commented on your post", timeout=TIMEOUT)
        assert len(toasts_added(page)) == 1
        browser.close()
