"""Live notifications in real headless Chromium: MQTT.js over WebSocket to the local emulator."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import User
from notifier.localiot.config import options_from_settings
from notifier.localiot.server import LocalIoT
from notifier.models import PendingPush
from notifier.aws.local import root_credentials as local_credentials

from .browser import launch, log_in, logged_in_page, make_users, wait_live
from .conftest import PASSWORD
from .live import free_port, point_settings_at

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]




def test_comment_lights_up_the_other_users_bell_toast_and_list(live_server, live_push):
    alice = User.objects.create_user("alice", password=PASSWORD, display_name="Alice")
    User.objects.create_user("bob", password=PASSWORD, display_name="Bob")
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        alice_page = logged_in_page(browser, base, "alice")
        alice_page.goto(f"{base}/notifications/")
        wait_live(alice_page)
        expect(alice_page.locator("#bell-count")).to_have_attribute("data-unread", "0")

        bob_page = logged_in_page(browser, base, "bob")
        bob_page.goto(f"{base}/posts/{post.pk}/")
        bob_page.fill("#id_text", "<img src=x onerror=alert(1)> live from bob")
        bob_page.click("button:has-text('Comment')")

        # No reload on alice's side: the badge, a toast and the list update from the push.
        expect(alice_page.locator("#bell-count")).to_have_text("1", timeout=5_000)
        toast = alice_page.locator("#toasts .toast")
        expect(toast).to_contain_text("Bob commented on your post: “<img src=x onerror=alert(1)> live from bob”")
        expect(toast.locator("img")).to_have_count(0)  # inserted as text, never as HTML
        items = alice_page.locator("#notification-list li.notification")
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text("live from bob")
        expect(items.first).to_have_class("notification unread is-new kind-comment")
        assert alice_page.evaluate("performance.getEntriesByType('navigation').length") == 1
        browser.close()


def test_second_tab_clears_its_badge_when_the_first_marks_all_read(live_server, live_push):
    alice = User.objects.create_user("alice", password=PASSWORD, display_name="Alice")
    bob = User.objects.create_user("bob", password=PASSWORD, display_name="Bob")
    post = services.create_post(alice, "hello")
    services.add_comment(bob, post.pk, "one")
    services.add_comment(bob, post.pk, "two")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context()
        first = context.new_page()
        first.goto(f"{base}/accounts/login/")
        first.fill("#id_username", "alice")
        first.fill("#id_password", PASSWORD)
        first.click("button:has-text('Log in')")
        second = context.new_page()
        second.goto(f"{base}/")
        wait_live(second)
        expect(second.locator("#bell-count")).to_have_text("2")

        first.goto(f"{base}/notifications/")
        first.click("#mark-all-read")
        expect(first.locator("#bell-count")).to_have_attribute("data-unread", "0")
        expect(second.locator("#bell-count")).to_have_attribute("data-unread", "0", timeout=5_000)
        expect(second.locator("#bell-count")).to_be_hidden()
        browser.close()


def test_after_a_drop_the_client_reconnects_and_catches_up_without_duplicates(live_server, settings):
    """The broker goes away (restart, network): pushes made meanwhile fail and stay pending; the
    client reconnects with backoff and fresh credentials and fetches ?after_seq= what it missed."""
    ports = {"mqtt_port": free_port(), "ws_port": free_port(), "http_port": free_port()}
    key_id, secret = local_credentials()

    def start():
        return LocalIoT(**options_from_settings(host="127.0.0.1", **ports)).start_in_thread()

    running = start()
    point_settings_at(settings, running.iot)
    alice = User.objects.create_user("alice", password=PASSWORD, display_name="Alice")
    bob = User.objects.create_user("bob", password=PASSWORD, display_name="Bob")
    post = services.create_post(alice, "hello")
    base = live_server.url
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = logged_in_page(browser, base, "alice")
            page.goto(f"{base}/notifications/")
            wait_live(page)
            services.add_comment(bob, post.pk, "while online")
            items = page.locator("#notification-list li.notification")
            expect(items).to_have_count(1, timeout=5_000)

            running.stop()
            expect(page.locator("#live-state")).to_have_attribute("data-state", "reconnecting", timeout=5_000)
            services.add_comment(bob, post.pk, "while away 1")
            services.add_comment(bob, post.pk, "while away 2")
            assert PendingPush.objects.filter(due_at__isnull=False).count() == 2
            running = start()
            wait_live(page)

            expect(items).to_have_count(3, timeout=10_000)
            expect(items.nth(0)).to_contain_text("while away 2")
            expect(items.nth(1)).to_contain_text("while away 1")
            expect(items.nth(2)).to_contain_text("while online")
            expect(page.locator("#bell-count")).to_have_text("3")
            # deliver_pending now pushes the two again: the page must not show them twice.
            PendingPush.objects.update(due_at=timezone.now())
            call_command("deliver_pending", verbosity=0)
            assert not PendingPush.objects.exists()  # all three delivered
            page.wait_for_timeout(500)
            expect(items).to_have_count(3)
            browser.close()
    finally:
        running.stop()


def test_credentials_are_refreshed_before_they_expire(live_server, live_push):
    alice = User.objects.create_user("alice", password=PASSWORD, display_name="Alice")
    bob = User.objects.create_user("bob", password=PASSWORD, display_name="Bob")
    post = services.create_post(alice, "hello")

    def expiring_soon(route):
        # Real keys from the real issuer (STS's shortest is 900 s), said to expire in 62 s: the
        # client refreshes a minute early, so after ~2 s (5 s at the soonest).
        creds = route.fetch().json()
        creds["expires_at"] = (timezone.now() + timedelta(seconds=62)).isoformat().replace("+00:00", "Z")
        route.fulfill(json=creds)

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        fetched = []
        page.on("request", lambda r: fetched.append(r.url) if r.url.endswith("/credentials/") else None)
        page.route("**/api/notifications/credentials/", expiring_soon)
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/notifications/")
        wait_live(page)
        page.wait_for_timeout(6_500)
        assert len(fetched) >= 2
        wait_live(page)
        services.add_comment(bob, post.pk, "after refresh")
        expect(page.locator("#bell-count")).to_have_text("1", timeout=5_000)
        expect(page.locator("#notification-list li.notification")).to_have_count(1)
        browser.close()


def test_the_browser_client_takes_the_aws_shaped_credentials_unchanged(live_server):
    """With NOTIFIER_BACKEND=aws the client gets a presigned wss:// URL and no MQTT password: it
    must connect to exactly that URL as that client id and subscribe to the user's topic. (AWS is
    out of reach here, so the connection itself is recorded rather than made.)"""
    alice = User.objects.create_user("alice", password=PASSWORD, display_name="Alice")
    presigned = ("wss://a1b2c3-ats.iot.eu-west-1.amazonaws.com/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                 "&X-Amz-Signature=abc&X-Amz-Security-Token=tok%2Ben")
    creds = {
        "backend": "aws", "client_id": f"herald-u{alice.pk}-RANDOMPART", "url": presigned,
        "username": None, "password": None,
        "topics": {"notifications": f"herald/dev/users/{alice.pk}/notifications",
                   "post_comments": "herald/dev/posts/+/comments"},
        "expires_at": (timezone.now() + timedelta(seconds=900)).isoformat().replace("+00:00", "Z"),
        "aws": {"access_key_id": "ASIA", "secret_access_key": "s", "session_token": "tok+en",
                "region": "eu-west-1", "endpoint": "a1b2c3-ats.iot.eu-west-1.amazonaws.com"},
    }
    recorder = """
      window.__connects = [];
      Object.defineProperty(window, "mqtt", {configurable: true, set(real) {
        Object.defineProperty(window, "mqtt", {value: {connect(url, opts) {
          const handlers = {};
          window.__connects.push({url, clientId: opts.clientId, username: opts.username ?? null,
                                  password: opts.password ?? null, subscribed: null});
          const client = {
            on(event, fn) { (handlers[event] = handlers[event] || []).push(fn); return client; },
            subscribe(topic, o, cb) { window.__connects.at(-1).subscribed = topic; cb(null, [{topic, qos: 1}]); },
            end() {}, removeAllListeners() {},
          };
          setTimeout(() => (handlers.connect || []).forEach((fn) => fn()), 10);
          return client;
        }}});
      }});
    """
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        page.add_init_script(recorder)
        page.route("**/api/notifications/credentials/", lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(creds)))
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", PASSWORD)
        page.click("button:has-text('Log in')")
        wait_live(page)
        connects = page.evaluate("window.__connects")
        assert connects == [{"url": presigned, "clientId": creds["client_id"], "username": None,
                             "password": None, "subscribed": creds["topics"]["notifications"]}]
        browser.close()


def test_pages_in_one_tab_reuse_the_live_credentials_and_tabs_keep_their_own(live_server, live_push):
    """Credentials are asked for once per tab, not once per page: the next page in the tab takes
    over the ones its predecessor held. Another tab asks for its own (one client id, one
    connection), and both stay live."""
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        asked = []
        page.context.on("request", lambda r: asked.append(r.frame.page) if r.url.endswith(
            "/api/notifications/credentials/") else None)
        for path in ("/", "/notifications/", "/people/", f"/posts/{post.pk}/", "/"):
            page.goto(f"{base}{path}")
            wait_live(page)
        # Once, or twice if a page's connection with the handed-over id was refused or dropped
        # (then it asks again, as after any drop); never once a page.
        assert asked.count(page) <= 2, f"asked {asked.count(page)} times for 5 pages in one tab"
        other = page.context.new_page()
        other.goto(f"{base}/")
        wait_live(other)
        assert asked.count(other) == 1
        client_ids = [tab.evaluate("window.heraldLive.clientId()") for tab in (page, other)]
        assert client_ids[0] != client_ids[1], client_ids
        services.add_comment(bob, post.pk, "to both tabs")
        for tab in (page, other):
            expect(tab.locator("#bell-count")).to_have_attribute("data-unseen", "1", timeout=5_000)
        browser.close()
