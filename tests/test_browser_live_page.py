"""Live pages in real headless Chromium against the local emulator, two users: comments and counts
on an open post page, the home page's "N new posts" button, toasts, the connection state and the
tab title."""
import json
import socket
import threading
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Comment
from notifier import services as notifier_services
from notifier.push.publisher import get_publisher
from notifier.topics import post_comments_topic

from .browser import launch, logged_in_page, make_users, wait_live
from .conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5_000
UNDO_MS = 5_000  # how long a delete can be undone (feed.js)


def open_before_connecting(page, url, meanwhile):
    """Open url with its request for live credentials held, run meanwhile() while the page is
    rendered but not yet subscribed, then let it connect and wait until it is live."""
    held = []
    page.route("**/api/notifications/credentials/", lambda route: held.append(route))
    page.goto(url)
    page.wait_for_function("() => document.readyState === 'complete'")
    meanwhile()
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for credentials"
    held[0].continue_()
    page.unroute("**/api/notifications/credentials/")
    wait_live(page)



def test_comments_and_likes_appear_on_an_open_post_page(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "live post")
    services.add_comment(alice, post.pk, "already here")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/posts/{post.pk}/")
        wait_live(page)
        page.evaluate("window.__marker = 42")
        card = page.locator(f"#post-{post.pk}")
        comments = page.locator("#comment-list li.comment")
        expect(comments).to_have_count(1)
        expect(card.locator(".comment-count")).to_have_text("1")

        bob_comment = services.add_comment(bob, post.pk, "<img src=x onerror=alert(1)> hi alice")
        item = page.locator(f"#comment-{bob_comment.pk}")
        expect(item).to_be_visible(timeout=TIMEOUT)
        expect(item.locator(".comment-text")).to_have_text("<img src=x onerror=alert(1)> hi alice")
        expect(item.locator("img")).to_have_count(0)  # text, never HTML
        expect(item.locator("a.author")).to_have_text("Bob")
        expect(item.locator("a.author")).to_have_attribute("href", "/u/bob/")
        expect(item.locator("time")).to_have_text("just now")
        expect(comments).to_have_count(2)
        expect(comments.last).to_have_id(f"comment-{bob_comment.pk}")  # in order, at the end
        expect(card.locator(".comment-count")).to_have_text("2")

        # A like by bob: the like count follows, alice's own button state does not change.
        services.like(bob, post.pk)
        expect(card.locator(".like-count")).to_have_text("1", timeout=TIMEOUT)
        expect(card.locator("button.like, .like-form button").first).to_have_attribute("aria-pressed", "false")
        services.unlike(bob, post.pk)
        expect(card.locator(".like-count")).to_have_text("0", timeout=TIMEOUT)

        # Removed: it goes, and the count with it.
        services.delete_comment(bob, bob_comment.pk)
        expect(item).to_have_count(0, timeout=TIMEOUT)
        expect(card.locator(".comment-count")).to_have_text("1")

        # Alice's own comment through the form: shown once, whichever comes first (push or reload).
        page.fill("#id_text", "mine")
        page.click("button:has-text('Comment')")
        expect(page.locator("#comment-list li.comment", has_text="mine")).to_have_count(1, timeout=TIMEOUT)
        page.wait_for_timeout(500)
        expect(page.locator("#comment-list li.comment", has_text="mine")).to_have_count(1)
        browser.close()


def test_an_open_post_page_ignores_other_posts(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "this one")
    other = services.create_post(alice, "another")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)
        services.add_comment(bob, other.pk, "elsewhere")
        services.add_comment(bob, post.pk, "here")
        expect(page.locator("#comment-list li.comment", has_text="here")).to_have_count(1, timeout=TIMEOUT)
        expect(page.locator("#comment-list li.comment")).to_have_count(1)
        browser.close()


def test_new_posts_button_inserts_them_without_a_reload(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    services.follow(alice, "bob")
    services.create_post(bob, "older post")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/")
        wait_live(page)
        page.evaluate("window.__marker = 'still here'")
        url = page.url
        button = page.locator("#new-posts-button")
        expect(button).to_be_hidden()

        first = services.create_post(bob, "fresh from bob")
        expect(button).to_have_text("1 new post", timeout=TIMEOUT)
        second = services.create_post(bob, "and another one")
        expect(button).to_have_text("2 new posts", timeout=TIMEOUT)
        expect(page.locator(f"#post-{first.pk}")).to_have_count(0)

        button.click()
        expect(page.locator(f"#post-{second.pk}")).to_be_visible(timeout=TIMEOUT)
        expect(page.locator(f"#post-{first.pk}")).to_be_visible()
        expect(button).to_be_hidden()
        posts = page.locator("article.post")
        expect(posts).to_have_count(3)
        expect(posts.nth(0)).to_have_id(f"post-{second.pk}")
        expect(posts.nth(1)).to_have_id(f"post-{first.pk}")
        expect(posts.nth(0).locator("time")).to_have_text("just now")
        assert page.url == url
        assert page.evaluate("window.__marker") == "still here"
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

        # Again: only what is new since, never a card twice.
        third = services.create_post(bob, "third")
        expect(button).to_have_text("1 new post", timeout=TIMEOUT)
        button.click()
        expect(page.locator(f"#post-{third.pk}")).to_be_visible(timeout=TIMEOUT)
        expect(posts).to_have_count(4)
        for post_id in (first.pk, second.pk, third.pk):
            expect(page.locator(f"#post-{post_id}")).to_have_count(1)
        assert page.evaluate("window.__marker") == "still here"
        browser.close()


def test_toasts_stack_three_then_more_dismiss_and_wait_while_hovered(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.add_init_script("window.heraldLiveOptions = {toastMs: 4000}")
        page.goto(f"{base}/posts/{post.pk}/")
        wait_live(page)
        toasts = page.locator("#toasts .toast")
        visible = page.locator("#toasts .toast:visible")
        more = page.locator("#toasts .toast-more")

        for i in range(5):
            services.add_comment(bob, post.pk, f"comment {i}")
        expect(toasts).to_have_count(5, timeout=TIMEOUT)
        expect(visible).to_have_count(3)
        expect(visible.last).to_contain_text("comment 4")  # the newest are the ones shown
        expect(more).to_have_text("+2 more")
        expect(more).to_have_attribute("href", "/notifications/")
        expect(page.locator("#toasts")).to_have_attribute("aria-live", "polite")

        # Hovered: time stops. Dismiss one with its button.
        visible.first.hover()
        visible.first.get_by_role("button", name="Dismiss").click()
        expect(toasts).to_have_count(4)
        expect(visible).to_have_count(3)
        expect(more).to_have_text("+1 more")
        page.wait_for_timeout(5_000)  # longer than a toast lives
        expect(toasts).to_have_count(4)

        # Focus holds them too.
        page.mouse.move(5, 5)
        visible.first.get_by_role("button", name="Dismiss").focus()
        page.wait_for_timeout(5_000)
        expect(toasts).to_have_count(4)

        # Let go: they leave by themselves.
        page.locator("#id_text").focus()
        expect(toasts).to_have_count(0, timeout=8_000)
        expect(more).to_be_hidden()

        # "+N more" leads to the notifications page.
        for i in range(4):
            services.add_comment(bob, post.pk, f"again {i}")
        expect(more).to_have_text("+1 more", timeout=TIMEOUT)
        more.click()
        page.wait_for_url(f"{base}/notifications/")
        browser.close()


def test_on_a_phone_one_toast_at_the_bottom_clear_of_the_composer(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 390, "height": 700})
        page = context.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", PASSWORD)
        page.click("button:has-text('Log in')")
        wait_live(page)
        services.add_comment(bob, post.pk, "one")
        services.add_comment(bob, post.pk, "two")
        expect(page.locator("#toasts .toast")).to_have_count(2, timeout=TIMEOUT)
        expect(page.locator("#toasts .toast:visible")).to_have_count(1)
        expect(page.locator("#toasts .toast-more")).to_have_text("+1 more")
        box = page.locator("#toasts").bounding_box()
        composer = page.locator(".composer").bounding_box()
        tabs = page.locator("nav.tabbar").bounding_box()
        assert box["width"] == 390 and abs(box["y"] + box["height"] - tabs["y"]) < 1  # a bar on the tab bar
        assert composer["y"] + composer["height"] <= box["y"]  # not over the composer
        browser.close()


class Proxy:
    """A TCP relay to the emulator's WebSocket port that can go silent without closing anything:
    what a dead network looks like (only keep-alive notices it)."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.port = self.server.getsockname()[1]
        self.silent = threading.Event()
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source, sink):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.silent.is_set():
                continue  # swallowed: neither end hears anything, nothing is closed
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self):
        self.server.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


def test_connection_state_is_in_words_and_notices_a_dead_network_within_10s(live_server, live_push, settings):
    make_users("alice")
    proxy = Proxy(live_push.ws_port)
    settings.LOCALIOT_WS_PORT = proxy.port  # the browser's MQTT connection goes through the relay
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = logged_in_page(browser, live_server.url, "alice")
            state = page.locator("#live-state")
            wait_live(page)
            expect(state).to_have_text("Live")
            # Quiet for longer than 1.5 × keep-alive: the emulator answers the pings.
            page.wait_for_timeout(9_000)
            expect(state).to_have_attribute("data-state", "live")

            proxy.silent.set()
            started = time.monotonic()
            expect(state).to_have_attribute("data-state", "reconnecting", timeout=10_000)
            assert time.monotonic() - started < 10
            expect(state).to_have_text("Reconnecting…")
            proxy.silent.clear()
            # New connections get through again (after the attempt made meanwhile times out).
            expect(state).to_have_attribute("data-state", "live", timeout=30_000)

            # The browser knows it is offline: at once.
            page.context.set_offline(True)
            expect(state).to_have_attribute("data-state", "offline", timeout=2_000)
            expect(state).to_have_text("Offline")
            page.context.set_offline(False)
            wait_live(page)
            expect(state).to_have_text("Live")
            browser.close()
    finally:
        proxy.close()


def test_the_tab_title_shows_the_unseen_count(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "before")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        expect(page).to_have_title("(1) Home · Herald")
        wait_live(page)
        services.add_comment(bob, post.pk, "while open")
        expect(page).to_have_title("(2) Home · Herald", timeout=TIMEOUT)
        expect(page.locator("#bell-count")).to_have_text("2")
        notifier_services.mark_seen(alice)
        expect(page).to_have_title("Home · Herald", timeout=TIMEOUT)
        expect(page.locator("#bell-count")).to_have_attribute("data-unseen", "0")
        browser.close()


def test_a_post_page_back_online_catches_up_on_what_it_missed(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    gone = services.add_comment(bob, post.pk, "to be deleted")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)
        page.context.set_offline(True)
        expect(page.locator("#live-state")).to_have_attribute("data-state", "offline", timeout=2_000)
        missed = services.add_comment(bob, post.pk, "while alice was offline")
        services.delete_comment(bob, gone.pk)
        services.like(bob, post.pk)
        page.context.set_offline(False)
        wait_live(page)
        expect(page.locator(f"#comment-{missed.pk}")).to_have_count(1, timeout=TIMEOUT)
        expect(page.locator(f"#comment-{gone.pk}")).to_have_count(0)
        card = page.locator(f"#post-{post.pk}")
        expect(card.locator(".comment-count")).to_have_text("1")
        expect(card.locator(".like-count")).to_have_text("1")
        browser.close()


def test_live_comments_link_mentions_and_your_own_has_delete(live_server, live_push):
    alice, bob, _ = make_users("alice", "bob", "carol")
    post = services.create_post(bob, "bob's post")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)

        # Bob's comment: mentions of users that exist link to them, the rest stay text; no Delete.
        theirs = services.add_comment(bob, post.pk, "hey @Alice, @nobody and mail@carol.example; <b>@carol</b>")
        item = page.locator(f"#comment-{theirs.pk}")
        expect(item).to_be_visible(timeout=TIMEOUT)
        expect(item.locator(".comment-text")).to_have_text("hey @Alice, @nobody and mail@carol.example; <b>@carol</b>")
        links = item.locator(".comment-text a.mention")
        expect(links).to_have_count(2)
        expect(links.nth(0)).to_have_text("@Alice")
        expect(links.nth(0)).to_have_attribute("href", "/u/alice/")
        expect(links.nth(1)).to_have_attribute("href", "/u/carol/")
        expect(item.locator("b")).to_have_count(0)
        expect(item.locator("button", has_text="Delete")).to_have_count(0)

        # Alice's own, written in another tab: it comes with the Delete form the server renders.
        mine = services.add_comment(alice, post.pk, "from my other tab")
        own = page.locator(f"#comment-{mine.pk}")
        expect(own).to_be_visible(timeout=TIMEOUT)
        page.evaluate("window.__marker = 'still here'")
        own.locator("button", has_text="Delete").click()
        page.get_by_role("dialog", name="Delete this comment?").get_by_role("button", name="Delete").click()
        expect(own).to_be_hidden()
        expect(own).to_have_count(0, timeout=UNDO_MS + TIMEOUT)  # gone in place, no page load
        assert page.evaluate("window.__marker") == "still here"
        assert not Comment.objects.filter(pk=mine.pk).exists()
        assert Comment.objects.filter(pk=theirs.pk).exists()
        browser.close()


def test_a_message_that_crossed_a_newer_one_is_dropped(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "counted")
    services.like(bob, post.pk)  # live_seq 1
    services.add_comment(bob, post.pk, "first")  # 2
    topic = post_comments_topic(post.pk)
    publisher = get_publisher()

    def publish(message):
        publisher.publish(topic, json.dumps({"v": 1, "post": post.pk, **message}).encode())

    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)
        card = page.locator(f"#post-{post.pk}")
        expect(card.locator(".like-count")).to_have_text("1")
        # Older than what the page shows (as a message overtaken on the way would be): ignored.
        publish({"type": "post_counts", "seq": 1, "comment_count": 0, "like_count": 99})
        publish({"type": "comment", "seq": 2, "comment": {"id": 999_001, "author": {"username": "bob"}, "text": "stale"},
                 "comment_count": 5, "like_count": 5})
        # Then a real write, numbered 3: applied.
        services.unlike(bob, post.pk)
        expect(card.locator(".like-count")).to_have_text("0", timeout=TIMEOUT)
        expect(card.locator(".comment-count")).to_have_text("1")
        expect(page.locator("#comment-999001")).to_have_count(0)
        # And a straggler from before it, after it: ignored too.
        publish({"type": "post_counts", "seq": 3, "comment_count": 1, "like_count": 42})
        services.like(bob, post.pk)  # 4
        expect(card.locator(".like-count")).to_have_text("1", timeout=TIMEOUT)
        page.wait_for_timeout(300)
        expect(card.locator(".like-count")).to_have_text("1")
        browser.close()


def test_what_happens_before_the_page_subscribes_is_not_missed(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "quick")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice").context.new_page()  # a new tab: no credentials to reuse
        made = {}

        def meanwhile():  # the page is rendered; its live connection is not up yet
            made["early"] = services.add_comment(bob, post.pk, "between render and subscribe")
            services.like(bob, post.pk)

        open_before_connecting(page, f"{live_server.url}/posts/{post.pk}/", meanwhile)
        early = made["early"]
        expect(page.locator(f"#comment-{early.pk}")).to_have_count(1, timeout=TIMEOUT)
        card = page.locator(f"#post-{post.pk}")
        expect(card.locator(".comment-count")).to_have_text("1")
        expect(card.locator(".like-count")).to_have_text("1")
        browser.close()


def test_what_is_deleted_leaves_open_tabs_and_the_new_posts_count(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    services.follow(alice, "bob")
    mine = services.create_post(alice, "alice's post")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        listing = logged_in_page(browser, base, "alice")
        listing.goto(f"{base}/notifications/")
        home = listing.context.new_page()  # a second tab of alice's
        home.goto(f"{base}/")
        wait_live(listing)
        wait_live(home)
        items = listing.locator("#notification-list li[data-id]")
        expect(items).to_have_count(0)

        # A comment, then its deletion: the item goes from the open list and the bell goes down.
        comment = services.add_comment(bob, mine.pk, "oops, wrong post")
        expect(items).to_have_count(1, timeout=TIMEOUT)
        expect(home.locator("#bell-count")).to_have_attribute("data-unseen", "1", timeout=TIMEOUT)
        services.delete_comment(bob, comment.pk)
        expect(items).to_have_count(0, timeout=TIMEOUT)
        expect(home.locator("#bell-count")).to_have_attribute("data-unseen", "0", timeout=TIMEOUT)

        # A post by someone alice follows that mentions her arrives as a mention: it counts as a
        # new post all the same; a post deleted before it was shown stops counting.
        button = home.locator("#new-posts-button")
        mention = services.create_post(bob, "hey @alice, look")
        expect(button).to_have_text("1 new post", timeout=TIMEOUT)
        plain = services.create_post(bob, "a plain one")
        expect(button).to_have_text("2 new posts", timeout=TIMEOUT)
        services.delete_post(bob, plain.pk)
        expect(button).to_have_text("1 new post", timeout=TIMEOUT)
        button.click()
        expect(home.locator(f"#post-{mention.pk}")).to_be_visible(timeout=TIMEOUT)
        expect(home.locator(f"#post-{plain.pk}")).to_have_count(0)
        expect(button).to_be_hidden()

        # A mention by someone alice does not follow is not a post of her feed.
        stranger = make_users("carol")[0]
        services.create_post(stranger, "@alice hello from a stranger")
        expect(listing.locator("#notification-list li[data-id]", has_text="hello from a stranger")).to_have_count(
            1, timeout=TIMEOUT)
        home.wait_for_timeout(500)
        expect(button).to_be_hidden()
        browser.close()


def test_a_page_says_connecting_then_live_and_the_navbar_does_not_move(live_server, live_push):
    make_users("alice")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice").context.new_page()  # asks for its own keys
        page.add_init_script("""
          window.__states = [];
          document.addEventListener("DOMContentLoaded", () => {
            const el = document.getElementById("live-state");
            const note = () => window.__states.push([el.dataset.started ? el.textContent.trim() : "(hidden)",
                                                     Math.round(document.querySelector("header.nav").getBoundingClientRect().height)]);
            note();
            new MutationObserver(note).observe(el, {subtree: true, childList: true, characterData: true, attributes: true});
          });
        """)
        page.goto(f"{live_server.url}/")
        wait_live(page)
        states = page.evaluate("window.__states")
        labels = [label for label, _ in states]
        assert "Offline" not in labels and "Reconnecting…" not in labels, states
        assert labels[-1] == "Live" and "Connecting…" in labels, states
        assert len({height for _, height in states}) == 1, states  # the header kept its height
        browser.close()


def test_deleting_your_comment_asks_first_and_takes_it_out_in_place(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(bob, "bob's post")
    mine = services.add_comment(alice, post.pk, "second thoughts")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)
        page.evaluate("window.__marker = 'still here'")
        item = page.locator(f"#comment-{mine.pk}")
        card = page.locator(f"#post-{post.pk}")
        expect(card.locator(".comment-count")).to_have_text("1")
        dialog = page.get_by_role("dialog", name="Delete this comment?")
        item.locator("button", has_text="Delete").click()
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        expect(item).to_be_visible()  # said no: kept
        assert Comment.objects.filter(pk=mine.pk).exists()
        item.locator("button", has_text="Delete").click()
        dialog.get_by_role("button", name="Delete").click()
        expect(item).to_be_hidden()
        expect(page.locator("#undo-bar")).to_contain_text("Comment deleted")
        expect(item).to_have_count(0, timeout=UNDO_MS + TIMEOUT)  # sent once its Undo time is over
        expect(card.locator(".comment-count")).to_have_text("0")
        expect(page.locator("#comment-list li.empty")).to_have_text("No comments yet.")
        assert page.evaluate("window.__marker") == "still here"
        assert not Comment.objects.filter(pk=mine.pk).exists()
        browser.close()


def test_news_that_only_the_catch_up_brings_still_gets_its_toast(live_server, live_push):
    """Something that happens between the page's render and its subscription reaches the page
    only through the catch-up that follows the subscription (its push went out to nobody): it is
    still news, with a toast, exactly once."""
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice").context.new_page()  # no keys to reuse
        open_before_connecting(page, f"{live_server.url}/",
                               lambda: services.add_comment(bob, post.pk, "said while you were connecting"))
        toasts = page.locator("#toasts .toast", has_text="said while you were connecting")
        expect(toasts).to_have_count(1, timeout=TIMEOUT)
        expect(page.locator("#bell-count")).to_have_attribute("data-unseen", "1")
        page.wait_for_timeout(500)
        expect(toasts).to_have_count(1)
        browser.close()
