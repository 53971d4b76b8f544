"""Open pages repair what a lost push left out, without waiting for the next push and without a
reload: a post page re-reads its comments when a message's seq skips one and on its slow timer
(when the post's live_seq moved); every page catches up its notifications on that timer (a
conditional request, 304 while nothing is new), when the tab is shown again, and on reconnect,
which after a broker restart comes within seconds."""
import json
import threading
import time

import pytest
from django.db import OperationalError
from playwright.sync_api import expect, sync_playwright

import notifier
from feed import services
from notifier.localiot.config import options_from_settings
from notifier.localiot.server import LocalIoT
from notifier.push.publisher import IotDataPublisher, _load, get_publisher
from notifier.topics import post_comments_topic, user_topic

from .browser import launch, logged_in_page, make_users, wait_live
from .live import free_port, point_settings_at

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10_000  # for what does not measure a deadline: generous, the machine is shared
FAST_SYNC = "window.heraldLiveOptions = {syncMs: 700}"
NO_SYNC = "window.heraldLiveOptions = {syncMs: 3600000}"  # the timer never fires within a test


class LosingPublisher(IotDataPublisher):
    """The real publisher, except that the next message to a topic named in lose_next() goes
    nowhere: publish() returns as if the broker had taken it (the push is lost, not owed)."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._lose = {}
        self.lost = []

    def lose_next(self, topic: str) -> None:
        with self._lock:
            self._lose[topic] = self._lose.get(topic, 0) + 1

    def publish(self, topic, payload, *, qos=1, urgent=False):
        with self._lock:
            if self._lose.get(topic):
                self._lose[topic] -= 1
                self.lost.append((topic, json.loads(payload)))
                return
        super().publish(topic, payload, qos=qos, urgent=urgent)


@pytest.fixture
def losing(settings, live_push):
    settings.NOTIFIER_PUBLISHER = f"{__name__}.LosingPublisher"
    _load.cache_clear()
    yield get_publisher()
    _load.cache_clear()


class Traffic:
    """The page's requests to one API path, as they are answered: [(query, status)]."""

    def __init__(self, page, path):
        self.seen = []
        self.path = path
        page.on("response", self._record)

    def _record(self, response):
        url = response.url.split("://", 1)[-1]
        path, _, query = url.partition("/")[2].partition("?")
        if "/" + path == self.path:
            self.seen.append((query, response.status))

    def statuses(self):
        return [status for _, status in self.seen]


def write(action, *args, **kwargs):
    """A write made while pages ask the server things (and its own retries read): SQLite's
    in-memory test database refuses at once to write a table another thread is reading, where
    PostgreSQL waits. The write is rolled back whole, so it is tried again, for a while."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return action(*args, **kwargs)
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def wait_until(page, condition, timeout_ms=TIMEOUT, what="the condition"):
    deadline = time.monotonic() + timeout_ms / 1000
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


# --- a post page --------------------------------------------------------------------------------

def test_a_post_page_repairs_a_lost_message_with_nothing_after_it(live_server, losing):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(bob, "bob's post")
    kept = services.add_comment(carol, post.pk, "already here")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.add_init_script(FAST_SYNC)
        posts = Traffic(page, f"/api/posts/{post.pk}/")
        comments = Traffic(page, f"/api/posts/{post.pk}/comments/")
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)
        page.evaluate("window.__marker = 'still here'")
        card = page.locator(f"#post-{post.pk}")
        # The timer reads the post and nothing more while nothing moved.
        wait_until(page, lambda: len(posts.seen) >= 3, what="three reads of the post")
        assert comments.seen == []

        losing.lose_next(post_comments_topic(post.pk))
        missed = write(services.add_comment, carol, post.pk, "its message was lost")
        assert [m["type"] for _, m in losing.lost] == ["comment"]
        expect(page.locator(f"#comment-{missed.pk}")).to_have_count(1, timeout=TIMEOUT)
        expect(page.locator(f"#comment-{missed.pk} .comment-text")).to_have_text("its message was lost")
        expect(card.locator(".comment-count")).to_have_text("2")
        assert len(comments.seen) == 1  # re-read once, because live_seq moved

        # A lost removal the same way.
        losing.lose_next(post_comments_topic(post.pk))
        write(services.delete_comment, carol, kept.pk)
        assert [m["type"] for _, m in losing.lost] == ["comment", "comment_removed"]
        expect(page.locator(f"#comment-{kept.pk}")).to_have_count(0, timeout=TIMEOUT)
        expect(card.locator(".comment-count")).to_have_text("1")
        expect(page.locator("#comment-list li.comment")).to_have_count(1)

        assert page.evaluate("window.__marker") == "still here"  # no reload
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.close()


def test_a_message_that_skips_a_seq_has_the_comments_re_read_at_once(live_server, losing):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(bob, "bob's post")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.add_init_script(NO_SYNC)
        page.goto(f"{live_server.url}/posts/{post.pk}/")
        wait_live(page)
        card = page.locator(f"#post-{post.pk}")

        losing.lose_next(post_comments_topic(post.pk))
        missed = write(services.add_comment, carol, post.pk, "lost on the way")  # seq 1, lost
        write(services.like, carol, post.pk)  # seq 2 arrives: 1 is missing
        expect(card.locator(".like-count")).to_have_text("1", timeout=TIMEOUT)
        expect(page.locator(f"#comment-{missed.pk}")).to_have_count(1, timeout=TIMEOUT)
        expect(card.locator(".comment-count")).to_have_text("1")
        expect(page.locator("#comment-list li.comment")).to_have_count(1)
        # What comes next is applied as usual (the page is up to date with seq 2).
        later = write(services.add_comment, carol, post.pk, "and then")
        expect(page.locator(f"#comment-{later.pk}")).to_have_count(1, timeout=TIMEOUT)
        expect(card.locator(".comment-count")).to_have_text("2")
        browser.close()


# --- notifications: the bell and the list -------------------------------------------------------

def comment_notice(recipient, actor, text):
    """One notification, one push (no post activity around it)."""
    write(notifier.notify, "comment", [recipient], actor=actor, text=text, url="/notifications/")


def test_a_lost_notification_push_is_caught_up_by_the_timer_with_304s_meanwhile(live_server, losing):
    alice, bob = make_users("alice", "bob")
    with sync_playwright() as p:
        browser = launch(p)
        listing = logged_in_page(browser, live_server.url, "alice")
        listing.add_init_script(FAST_SYNC)
        listing.goto(f"{live_server.url}/notifications/")
        home = listing.context.new_page()  # a second tab: only its bell shows it
        home.add_init_script(FAST_SYNC)
        home.goto(f"{live_server.url}/")
        catch_ups = Traffic(listing, "/api/notifications/")
        wait_live(listing)
        wait_live(home)
        # Nothing new: the timer's questions are answered 304.
        wait_until(listing, lambda: catch_ups.statuses().count(304) >= 2, what="two 304 answers")

        losing.lose_next(user_topic(alice.pk))
        comment_notice(alice, bob, "bob said something (its push was lost)")
        assert [m["type"] for _, m in losing.lost] == ["notification"]
        items = listing.locator("#notification-list li.notification")
        expect(items).to_have_count(1, timeout=TIMEOUT)
        expect(items.first).to_contain_text("its push was lost")
        expect(listing.locator("#bell-count")).to_have_attribute("data-unread", "1")
        expect(home.locator("#bell-count")).to_have_text("1", timeout=TIMEOUT)
        expect(home).to_have_title("(1) Home · Herald")
        answered = len(catch_ups.seen)
        # Up to date again: back to 304s.
        wait_until(listing, lambda: catch_ups.statuses()[answered:].count(304) >= 1, what="a 304 after the repair")
        assert listing.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.close()


def test_a_gap_in_notification_seqs_is_filled_when_the_next_push_arrives(live_server, losing):
    alice, bob = make_users("alice", "bob")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.add_init_script(NO_SYNC)
        page.goto(f"{live_server.url}/notifications/")
        wait_live(page)
        losing.lose_next(user_topic(alice.pk))
        comment_notice(alice, bob, "first, lost")
        comment_notice(alice, bob, "second, pushed")
        items = page.locator("#notification-list li.notification")
        expect(items).to_have_count(2, timeout=TIMEOUT)
        expect(items.nth(0)).to_contain_text("second, pushed")
        expect(items.nth(1)).to_contain_text("first, lost")
        expect(page.locator("#bell-count")).to_have_attribute("data-unread", "2")
        browser.close()


def test_a_hidden_tab_does_not_ask_and_catches_up_when_shown(live_server, losing):
    alice, bob = make_users("alice", "bob")
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, live_server.url, "alice")
        page.add_init_script(FAST_SYNC)
        page.add_init_script("""
          window.__visibility = "visible";
          Object.defineProperty(document, "visibilityState", {get: () => window.__visibility});
          window.__show = (state) => {
            window.__visibility = state;
            document.dispatchEvent(new Event("visibilitychange"));
          };
        """)
        page.goto(f"{live_server.url}/")
        catch_ups = Traffic(page, "/api/notifications/")
        wait_live(page)
        wait_until(page, lambda: catch_ups.statuses().count(304) >= 1, what="a 304 answer")

        page.evaluate("window.__show('hidden')")
        page.wait_for_function("() => window.heraldLive.idle()")
        asked = len(catch_ups.seen)
        losing.lose_next(user_topic(alice.pk))
        comment_notice(alice, bob, "while the tab was hidden")
        page.wait_for_timeout(2_500)  # over three timer periods
        assert len(catch_ups.seen) == asked  # a hidden tab does not ask
        expect(page.locator("#bell-count")).to_have_text("0")

        page.evaluate("window.__show('visible')")
        expect(page.locator("#bell-count")).to_have_text("1", timeout=TIMEOUT)
        browser.close()


# --- a broker restart ---------------------------------------------------------------------------

def own_emulator(settings):
    """An emulator of the test's own, on ports fixed for the test, with the function that starts
    it (again) there: a page reconnects to the same address after a restart. Returns both."""
    ports = {"mqtt_port": free_port(), "ws_port": free_port(), "http_port": free_port()}

    def start():
        return LocalIoT(**options_from_settings(host="127.0.0.1", **ports)).start_in_thread()

    running = start()
    point_settings_at(settings, running.iot)
    return running, start


def test_after_a_5s_broker_outage_everything_shows_within_3s_of_its_return(live_server, settings):
    """The emulator is stopped for 5 s with a page open and started again on the same ports.
    Notifications made during the outage (their pushes fail) and after it are all on the page
    within 3 s of the broker's return: the page reconnects within about a second and catches up
    by itself (the slow timer is off, and nothing retries the failed pushes)."""
    running, start = own_emulator(settings)
    alice, bob = make_users("alice", "bob")
    base = live_server.url
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = logged_in_page(browser, base, "alice")
            page.add_init_script(NO_SYNC)
            page.goto(f"{base}/notifications/")
            wait_live(page)
            state = page.locator("#live-state")
            items = page.locator("#notification-list li.notification")
            comment_notice(alice, bob, "before the outage")
            expect(items).to_have_count(1, timeout=TIMEOUT)

            running.stop()
            down = time.monotonic()
            expect(state).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT)
            comment_notice(alice, bob, "during the outage 1")
            page.wait_for_timeout(max(0, (down + 2.5 - time.monotonic()) * 1000))
            comment_notice(alice, bob, "during the outage 2")
            page.wait_for_timeout(max(0, (down + 5 - time.monotonic()) * 1000))
            assert page.evaluate("document.body.dataset.liveState") != "live"

            running = start()
            back = time.monotonic()  # the broker listens again: the 3 s start now
            comment_notice(alice, bob, "after the outage 1")
            page.wait_for_timeout(max(0, (back + 1 - time.monotonic()) * 1000))
            comment_notice(alice, bob, "after the outage 2")

            left_ms = (back + 3 - time.monotonic()) * 1000
            assert left_ms > 0, "the test itself took the 3 s"
            expect(items).to_have_count(5, timeout=left_ms)
            assert time.monotonic() - back <= 3.0
            texts = items.all_inner_texts()
            for n, text in enumerate(["after the outage 2", "after the outage 1", "during the outage 2",
                                      "during the outage 1", "before the outage"]):
                assert text in texts[n]
            expect(page.locator("#bell-count")).to_have_attribute("data-unread", "5")
            expect(state).to_have_attribute("data-state", "live")
            browser.close()
    finally:
        running.stop()


def test_while_the_broker_stays_down_new_notifications_still_show_through_the_api(live_server, settings):
    """Each reconnect attempt also asks the API, which works while the broker does not: a
    notification made during an outage shows without waiting for the broker (slow timer off)."""
    running, _ = own_emulator(settings)
    alice, bob = make_users("alice", "bob")
    base = live_server.url
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = logged_in_page(browser, base, "alice")
            page.add_init_script(NO_SYNC)
            page.goto(f"{base}/notifications/")
            wait_live(page)
            state = page.locator("#live-state")
            items = page.locator("#notification-list li.notification")
            running.stop()
            expect(state).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT)
            comment_notice(alice, bob, "while the broker is away")
            expect(items).to_have_count(1, timeout=TIMEOUT)
            assert "while the broker is away" in items.first.inner_text()
            expect(page.locator("#bell-count")).to_have_attribute("data-unread", "1")
            assert page.evaluate("document.body.dataset.liveState") != "live"  # still no broker
            browser.close()
    finally:
        running.stop()
