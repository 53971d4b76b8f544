"""Grouped notifications, seen vs read, and muting, in real headless Chromium against the local
emulator: items change in place by id, the badge counts unseen items, muted notifications never
arrive."""

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from notifier import services as notifier_services
from notifier.diagnostics import send_test_push
from notifier.models import Kind, MutedPost, Notification, NotificationState

from .browser import launch, logged_in_page, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5_000



# Records every toast's text as it appears (toasts remove themselves after a few seconds).
RECORD_TOASTS = """
  window.__toasts = [];
  new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach((node) => {
    if (node.classList && node.classList.contains("toast")) window.__toasts.push(node.textContent);
  }))).observe(document, {childList: true, subtree: true});
"""


def toasts(page) -> list[str]:
    return page.evaluate("window.__toasts")


def items(page):
    return page.locator("#notification-list li.notification")


def item_id(page, kind, post_ref) -> str:
    return str(Notification.objects.get(kind=kind, event__post_ref=post_ref).pk)


def test_likes_update_one_item_in_place_and_unlikes_take_it_back(live_server, live_push):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(alice, "grouping works")
    other = services.create_post(alice, "another post")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.add_init_script(RECORD_TOASTS + "window.heraldLiveOptions = {toastMs: 600000};")  # toasts stay up
        page.goto(f"{base}/notifications/")
        wait_live(page)
        listed = items(page)

        services.like(bob, post.pk)
        expect(listed).to_have_count(1, timeout=TIMEOUT)
        expect(listed.first).to_contain_text("Bob liked your post: “grouping works”")
        like_id = item_id(page, Kind.LIKE, post.pk)
        like_item = page.locator(f"#notification-list li[data-id='{like_id}']")
        expect(like_item).to_have_attribute("data-count", "1")

        # Something newer on top, so that the like's next bump has to move it up.
        services.add_comment(bob, other.pk, "a comment")
        expect(listed).to_have_count(2, timeout=TIMEOUT)
        expect(listed.first).to_contain_text("Bob commented on your post")

        services.like(carol, post.pk)
        expect(like_item).to_contain_text("Carol and Bob liked your post: “grouping works”", timeout=TIMEOUT)
        expect(like_item).to_have_attribute("data-count", "2")
        expect(like_item).to_have_count(1)  # still one line for that post…
        expect(listed).to_have_count(2)
        expect(listed.first).to_have_attribute("data-id", like_id)  # …moved to the top (new seq)
        expect(like_item).to_have_class("notification unread is-new kind-like")
        expect(like_item.locator(".avatar")).to_have_text(["C", "B"])
        expect(page.locator("#toasts .toast", has_text="Carol and Bob liked your post")).to_have_count(1)
        bumped_seq = like_item.get_attribute("data-seq")
        assert bumped_seq == str(Notification.objects.get(pk=like_id).seq)

        services.unlike(carol, post.pk)
        expect(like_item).not_to_contain_text("Carol", timeout=TIMEOUT)
        expect(like_item).to_contain_text("Bob liked your post: “grouping works”")
        expect(like_item).to_have_attribute("data-count", "1")
        expect(like_item).to_have_attribute("data-seq", bumped_seq)  # changed in place, not news
        expect(listed).to_have_count(2)
        expect(listed.first).to_have_attribute("data-id", like_id)

        services.unlike(bob, post.pk)
        expect(like_item).to_have_count(0, timeout=TIMEOUT)
        expect(listed).to_have_count(1)
        expect(listed.first).to_contain_text("Bob commented on your post")
        assert not Notification.objects.filter(kind=Kind.LIKE).exists()
        # The badge took the removed item out of its count: only the comment is unseen now.
        expect(page.locator("#bell-count")).to_have_attribute("data-unseen", "1")
        expect(page.locator("#bell-count")).to_have_text("1")
        # The removed item's toast went with it; the comment's stays.
        expect(page.locator("#toasts .toast", has_text="liked your post")).to_have_count(0)
        expect(page.locator("#toasts .toast", has_text="Bob commented on your post")).to_have_count(1)
        # One toast per piece of news, the like's changed in place; none for what was not news.
        assert toasts(page) == ["Bob liked your post: “grouping works”", "Bob commented on your post: “a comment”"]
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.close()


def test_seen_clears_the_badge_in_every_tab_while_items_stay_unread(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "first")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        first = logged_in_page(browser, base, "alice")  # lands on the home page
        second = first.context.new_page()
        second.goto(f"{base}/")
        tabs = [first, second]
        for tab in tabs:
            wait_live(tab)
            expect(tab.locator("#bell-count")).to_have_text("1")

        services.add_comment(bob, post.pk, "second")
        for tab in tabs:
            expect(tab.locator("#bell-count")).to_have_text("2", timeout=TIMEOUT)
            expect(tab.locator("#bell-count")).to_be_visible()

        third = first.context.new_page()
        third.goto(f"{base}/notifications/")  # opening the list marks everything seen
        expect(third.locator("#bell-count")).to_be_hidden()
        for tab in tabs:  # no reload: the `seen` push clears the other tabs' badges
            expect(tab.locator("#bell-count")).to_have_attribute("data-unseen", "0", timeout=TIMEOUT)
            expect(tab.locator("#bell-count")).to_be_hidden()
            expect(tab.locator("#bell-count")).to_have_attribute("data-unread", "2")
            assert tab.evaluate("performance.getEntriesByType('navigation').length") == 1
        # Seen is not read: both items are still unread, and styled so.
        expect(third.locator("#notification-list li.notification.unread")).to_have_count(2)
        state = NotificationState.objects.get(pk=alice.pk)
        assert (state.unseen_count, state.unread_count) == (0, 2)

        # The same from a script in one tab: POST /api/notifications/seen/.
        wait_live(third)
        services.add_comment(bob, post.pk, "third")
        for tab in (*tabs, third):
            expect(tab.locator("#bell-count")).to_have_text("1", timeout=TIMEOUT)
        answer = first.evaluate("""async () => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const r = await fetch("/api/notifications/seen/", {method: "POST", credentials: "same-origin",
                headers: {"X-CSRFToken": token, "Accept": "application/json"}});
            return [r.status, await r.json()];
        }""")
        assert answer == [200, {"unseen_count": 0}]
        for tab in (*tabs, third):
            expect(tab.locator("#bell-count")).to_have_attribute("data-unseen", "0", timeout=TIMEOUT)
            expect(tab.locator("#bell-count")).to_be_hidden()
        expect(third.locator("#notification-list li.notification.unread")).to_have_count(3)
        browser.close()


def test_a_muted_kind_never_arrives_while_others_still_do(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "do not tell me about likes")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/notifications/")
        page.click("#notification-settings-link")
        expect(page).to_have_url(f"{base}/settings/notifications/")
        expect(page.locator("#channel-matrix caption")).to_have_text("Where each kind of notification reaches you")
        # In-app off is the mute: the kind's push and email boxes go disabled at once.
        page.uncheck("#inapp-like")
        expect(page.locator("#push-like")).to_be_disabled()
        expect(page.locator("#email-like")).to_be_disabled()
        page.click("#save-notification-settings")
        expect(page.locator(".message.success")).to_have_text("Notification settings saved.")
        expect(page.locator("#inapp-like")).not_to_be_checked()
        expect(page.locator("#inapp-comment")).to_be_checked()
        expect(page.locator("#push-like")).to_be_disabled()
        assert notifier_services.preferences(alice)["muted_kinds"] == ["like"]
        # The disabled push box's choice (on) was kept (settings.js sent it in a hidden field), for
        # when likes are unmuted; muted, they reach no channel.
        assert NotificationState.objects.get(pk=alice.pk).push_off == ""
        assert "like" not in notifier_services.preferences(alice)["channels"]["web_push"]

        page.goto(f"{base}/notifications/")
        wait_live(page)
        expect(page.locator("#bell-count")).to_have_attribute("data-unseen", "0")

        bob_page = logged_in_page(browser, base, "bob")
        bob_page.goto(f"{base}/posts/{post.pk}/")
        bob_page.click(f"#post-{post.pk} .post-actions button.action")
        expect(bob_page.locator(f"#post-{post.pk} .like-count")).to_have_text("1")
        # The positive control: a comment still arrives live, after the like.
        bob_page.fill("#id_text", "comments still arrive")
        bob_page.click("button:has-text('Comment')")

        listed = items(page)
        expect(listed).to_have_count(1, timeout=TIMEOUT)
        expect(listed.first).to_contain_text("Bob commented on your post")
        expect(page.locator("#toasts .toast", has_text="commented")).to_have_count(1)
        # The like came before the comment and never arrived: no toast, no item, the badge counts
        # only the comment, and nothing was stored.
        expect(page.locator("#toasts .toast", has_text="liked")).to_have_count(0)
        expect(page.locator("#notification-list li.kind-like")).to_have_count(0)
        expect(page.locator("#bell-count")).to_have_text("1")
        assert not Notification.objects.filter(recipient=alice, kind=Kind.LIKE).exists()
        assert Notification.objects.filter(recipient=alice, kind=Kind.COMMENT).count() == 1
        assert NotificationState.objects.get(pk=alice.pk).unseen_count == 1

        # A bad kind posted to the form is refused with a message, not a 500.
        response = page.request.post(f"{base}/settings/notifications/", form={
            "csrfmiddlewaretoken": page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value"),
            "in_app": "likes", "email_digest": "daily"}, headers={"Referer": f"{base}/settings/notifications/"})
        assert response.status == 400 and "Unknown kind: likes." in response.text()
        assert notifier_services.preferences(alice)["muted_kinds"] == ["like"]
        browser.close()


def test_mute_this_post_stops_its_notifications_and_unmute_restores_them(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    muted_post = services.create_post(alice, "a noisy thread")
    quiet_post = services.create_post(alice, "a quiet one")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/posts/{muted_post.pk}/")
        expect(page.locator("#mute-button")).to_have_text("Mute this post")
        page.evaluate("window.__marker = 'still here'")
        page.click("#mute-button")
        expect(page.locator("#mute-button")).to_have_text("Unmute")  # in place (htmx), no page load
        expect(page.locator("#mute-state")).to_have_text("You are not notified about this post.")
        expect(page.locator("#mute-button")).to_have_attribute("aria-pressed", "true")
        assert page.evaluate("window.__marker") == "still here"
        assert MutedPost.objects.filter(user=alice, post_ref=muted_post.pk).exists()

        # The settings page lists it.
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator(f"#muted-posts li[data-post='{muted_post.pk}']")).to_be_visible()

        listing = page.context.new_page()
        listing.goto(f"{base}/notifications/")
        wait_live(listing)
        listed = items(listing)
        services.add_comment(bob, muted_post.pk, "on the muted post")
        services.add_comment(bob, quiet_post.pk, "on the other post")  # the positive control
        expect(listed).to_have_count(1, timeout=TIMEOUT)
        expect(listed.first).to_contain_text("on the other post")
        expect(listing.locator("#toasts .toast", has_text="on the muted post")).to_have_count(0)
        expect(listing.locator("#bell-count")).to_have_text("1")
        assert not Notification.objects.filter(recipient=alice, event__post_ref=muted_post.pk).exists()

        page.goto(f"{base}/posts/{muted_post.pk}/")
        page.click("#mute-button")  # Unmute
        expect(page.locator("#mute-state")).to_have_text("You will be notified about this post again.")
        expect(page.locator("#mute-button")).to_have_text("Mute this post")
        assert not MutedPost.objects.filter(user=alice).exists()

        services.add_comment(bob, muted_post.pk, "heard again")
        expect(listed).to_have_count(2, timeout=TIMEOUT)
        expect(listed.first).to_contain_text("heard again")
        expect(listing.locator("#toasts .toast", has_text="heard again")).to_have_count(1)
        expect(listing.locator("#bell-count")).to_have_text("1")  # opening the post marked all seen
        browser.close()


def test_the_admin_test_push_shows_as_a_toast(live_server, live_push):
    (alice,) = make_users("alice")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        wait_live(page)
        send_test_push([alice.pk])
        expect(page.locator("#toasts .toast")).to_have_text("Test push from the Herald admin.", timeout=TIMEOUT)
        expect(page.locator("#bell-count")).to_be_hidden()  # nothing stored, nothing counted
        browser.close()
