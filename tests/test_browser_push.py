"""Web Push in real headless Chromium: the settings page's "Notify me on this device" switch, the
real service worker (/sw.js) receiving a push through the DevTools protocol, "not twice" while a
Herald tab is visible, and a click on the notification marking it read and opening the item.

The one stand-in is the browser's own hop to its push service. Headless Chromium cannot reach a
real push service (FCM), so an init script (STAND_IN) replaces PushManager.prototype.subscribe and
getSubscription with ones that hand back a subscription whose endpoint is on the emulator's local
push service and whose keys the test made (tests.webpush.Device: its own P-256 key pair and auth
secret), as a browser's would be. Everything else is real: the permission, the click, the service
worker's registration, the POST to the API, the server encrypting the notification and POSTing it
to the local push service with a VAPID JWT; the test takes the message from the push service,
decrypts it with the device's private key, and hands the plaintext to the real service worker with
`ServiceWorker.deliverPushMessage`, which is what the browser does with a push it receives.
"""
import json
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from notifier.models import Notification, WebPushSubscription

from .browser import launch, log_in, make_users, wait_live
from .pictures import picture, upload
from .test_browser_polish import axe_problems
from .webpush import device, vapid, vapid_pair, web_push  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10_000
SITE_ICON = "/static/feed/apple-touch-icon.png"

# Runs in every page before its own scripts. Records what the page asks of the browser
# (permission prompts, subscribe calls) and what the service worker tells it, and stands in for
# the push service's hop (see the module's docstring). The subscription lives in localStorage,
# as the browser keeps a real one across page loads.
STAND_IN = """
(() => {
  const device = %s;
  const STORE = "herald-test-push-subscription";
  const seen = window.__push = { permission: 0, subscribe: [], messages: [] };
  navigator.serviceWorker.addEventListener("message", (event) => seen.messages.push(event.data));
  const b64url = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer.buffer || buffer)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const subscription = (key) => ({
    endpoint: device.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: bytes(key).buffer },
    toJSON: () => ({ endpoint: device.endpoint, expirationTime: null, keys: device.keys }),
    unsubscribe: () => { localStorage.removeItem(STORE); return Promise.resolve(true); },
  });
  PushManager.prototype.subscribe = function (options) {
    const key = b64url(options.applicationServerKey);
    seen.subscribe.push({ userVisibleOnly: options.userVisibleOnly, applicationServerKey: key });
    localStorage.setItem(STORE, key);
    return Promise.resolve(subscription(key));
  };
  PushManager.prototype.getSubscription = function () {
    const key = localStorage.getItem(STORE);
    return Promise.resolve(key ? subscription(key) : null);
  };
  const ask = Notification.requestPermission;
  Notification.requestPermission = function () {
    seen.permission += 1;
    return ask.apply(Notification, arguments);
  };
})();
"""

SHOWN = """() => self.registration.getNotifications().then((shown) => shown.map((n) => (
  { title: n.title, body: n.body, icon: n.icon, tag: n.tag, renotify: n.renotify, data: n.data })))"""


def until(condition, what, timeout=TIMEOUT / 1000):
    """Wait for `condition()` to be truthy (a condition, checked every 50 ms), and return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Chromium:
    """One browser context for one user's device: the stand-in, the notification permission, and
    a DevTools session that sees the service worker's registration and delivers pushes to it."""

    def __init__(self, browser, base, device, *, grant=True):
        self.base = base
        self.context = browser.new_context()
        if grant:
            self.context.grant_permissions(["notifications"], origin=base)
        self.context.add_init_script(STAND_IN % json.dumps(
            {"endpoint": device.endpoint, "keys": device.subscription()["keys"]}))
        self.page = self.context.new_page()
        self.registrations, self.activated = {}, set()
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._registrations)
        self.cdp.on("ServiceWorker.workerVersionUpdated", self._versions)
        self.cdp.send("ServiceWorker.enable")

    def _registrations(self, event):
        for r in event["registrations"]:
            self.registrations[r["registrationId"]] = None if r["isDeleted"] else r["scopeURL"]

    def _versions(self, event):
        self.activated |= {v["registrationId"] for v in event["versions"] if v["status"] == "activated"}

    def registration_id(self) -> str:
        """The id of the registration for the site root, once its worker is active."""
        def active():
            self.page.evaluate("0")  # (lets the DevTools events in)
            return next((rid for rid, scope in self.registrations.items()
                         if scope == self.base + "/" and rid in self.activated), None)
        return until(active, "the service worker to be active")

    def deliver(self, plaintext: bytes):
        """What the browser does with a push from its push service: hands it to the worker."""
        self.cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": self.base, "registrationId": self.registration_id(), "data": plaintext.decode("utf-8")})

    def worker(self):
        return until(lambda: next((w for w in self.context.service_workers if w.url == self.base + "/sw.js"), None),
                     "the service worker")

    def shown(self) -> list[dict]:
        return self.worker().evaluate(SHOWN)


def received(device, count: int) -> list[bytes]:
    """The plaintexts of the first `count` pushes the local push service accepted for `device`,
    decrypted with the device's private key."""
    import http_ece

    raw = until(lambda: len(device.raw_messages) >= count and device.raw_messages, f"{count} push(es) sent")
    return [http_ece.decrypt(m["body"], private_key=device.key, auth_secret=device.auth, version="aes128gcm")
            for m in raw[:count]]


def test_notify_me_on_this_device_end_to_end(live_server, device, vapid, live_push):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(alice, "a post to be told about")
    laptop = device()
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        chromium = Chromium(browser, base, laptop)
        page = chromium.page
        log_in(page, base, "alice")
        page.goto(f"{base}/settings/notifications/")
        switch = page.locator("#push-switch")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "off", timeout=TIMEOUT)
        expect(switch).to_have_attribute("aria-pressed", "false")
        expect(switch).to_be_enabled()
        # Nothing is asked on page load: no prompt, no subscription, no service worker.
        assert page.evaluate("window.__push") == {"permission": 0, "subscribe": [], "messages": []}
        assert page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r === undefined)")
        assert not WebPushSubscription.objects.exists()

        # On: the prompt (granted), the worker, subscribe with the server's key, the POST.
        switch.click()
        expect(page.locator("#push-state")).to_have_attribute("data-state", "on", timeout=TIMEOUT)
        expect(switch).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#push-state")).to_contain_text("On: this device shows a notification")
        asked = page.evaluate("window.__push")
        assert asked["permission"] == 1
        assert asked["subscribe"] == [{"userVisibleOnly": True, "applicationServerKey": vapid.public}]
        stored = WebPushSubscription.objects.get()
        assert (stored.user_id, stored.endpoint) == (alice.pk, laptop.endpoint)
        assert page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.scope)") == base + "/"
        chromium.registration_id()
        # A reload shows it on, and still asks nothing.
        page.reload()
        expect(page.locator("#push-state")).to_have_attribute("data-state", "on", timeout=TIMEOUT)
        assert page.evaluate("window.__push.permission") == 0

        # Not twice: with a visible Herald tab, the page's toast (live push) is the only one; the
        # worker passes the push to the page and shows nothing.
        page.goto(f"{base}/")
        wait_live(page)
        services.add_comment(bob, post.pk, "hello <b>alice</b>")
        comment = Notification.objects.get(recipient=alice, kind="comment")
        expect(page.locator(f"#toasts .toast[data-id='{comment.pk}']")).to_have_count(1, timeout=TIMEOUT)
        [plaintext] = received(laptop, 1)
        pushed = json.loads(plaintext)
        assert {k: pushed[k] for k in ("v", "type", "id", "seq", "kind", "text", "url")} == {
            "v": 1, "type": "notification", "id": comment.pk, "seq": comment.seq, "kind": "comment",
            "text": "Bob commented on your post: “hello <b>alice</b>”", "url": comment.url}
        assert pushed["actor"]["username"] == "bob"
        chromium.deliver(plaintext)
        page.wait_for_function(f"() => window.__push.messages.some((m) => m.message.id === {comment.pk})",
                               timeout=TIMEOUT)
        expect(page.locator(f"#toasts .toast[data-id='{comment.pk}']")).to_have_count(1)  # still one
        expect(page.locator("#toasts .toast")).to_have_count(1)

        # No Herald tab visible (the tab went to another site): the worker shows it.
        page.goto("about:blank")
        services.like(carol, post.pk)
        like = Notification.objects.get(recipient=alice, kind="like")
        _, plaintext = received(laptop, 2)
        assert json.loads(plaintext)["id"] == like.pk
        chromium.deliver(plaintext)
        shown = until(chromium.shown, "a notification shown")
        # Only this one: the comment's push, delivered while a Herald tab was visible, showed nothing.
        assert shown == [{"title": "New like", "body": f"Carol liked your post: “{post.text}”", "icon": base + SITE_ICON,
                          "tag": f"herald-{like.pk}", "renotify": False, "data": {"id": like.pk, "url": like.url}}]
        assert not Notification.objects.for_user(alice).get(pk=like.pk).read

        # The click. DevTools cannot click a system notification, so the worker's own
        # notificationclick handler is run on the notification it showed, by an event dispatched
        # in the worker. Without a real click the browser refuses focus() and openWindow(); it
        # allows navigate() on a Herald tab the worker controls, which is the path checked here:
        # the tab goes through /notifications/<id>/open/ (marked read) to the item.
        page.goto(f"{base}/notifications/")
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        chromium.worker().evaluate("""() => self.registration.getNotifications().then((shown) =>
            self.dispatchEvent(new NotificationEvent("notificationclick", { notification: shown[0] })))""")
        page.wait_for_url(f"{base}{like.url}", timeout=TIMEOUT)
        assert Notification.objects.for_user(alice).get(pk=like.pk).read
        assert until(lambda: chromium.shown() == [], "the notification closed")

        # Another account in the same browser (alice's session ended without a log-out, which would
        # have cleared the worker and its subscription with Clear-Site-Data): for bob the switch is
        # off, though the browser still has alice's subscription; turning it on moves it to him.
        page.context.clear_cookies()
        log_in(page, base, "bob")
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "off", timeout=TIMEOUT)
        assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription())") is not None
        switch.click()
        expect(page.locator("#push-state")).to_have_attribute("data-state", "on", timeout=TIMEOUT)
        stored = WebPushSubscription.objects.get()
        assert (stored.user_id, stored.endpoint) == (bob.pk, laptop.endpoint)

        # Off: unsubscribed in the browser, the server's row deleted.
        page.reload()
        expect(page.locator("#push-state")).to_have_attribute("data-state", "on", timeout=TIMEOUT)
        switch.click()
        expect(page.locator("#push-state")).to_have_attribute("data-state", "off", timeout=TIMEOUT)
        expect(switch).to_have_attribute("aria-pressed", "false")
        assert not WebPushSubscription.objects.exists()
        assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription())") is None
        browser.close()


def test_a_bumped_group_replaces_its_own_notification_and_alerts_again(live_server, device, vapid):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(alice, "likeable")
    phone = device()
    services.set_avatar(carol, upload(picture(96, 96)))
    carol.refresh_from_db()
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        chromium = Chromium(browser, base, phone)
        page = chromium.page
        log_in(page, base, "alice")
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "off", timeout=TIMEOUT)
        page.click("#push-switch")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "on", timeout=TIMEOUT)
        chromium.registration_id()
        # A Herald window, but the admin's (its pages have no live toasts): not one that showed it.
        page.goto(f"{base}/admin/")
        expect(page.locator("#id_username")).to_be_visible()
        services.like(bob, post.pk)
        chromium.deliver(received(phone, 1)[0])
        first = until(chromium.shown, "the first like shown")
        services.like(carol, post.pk)  # the same group, bumped: same id, new seq, count 2
        bumped = received(phone, 2)[1]
        assert json.loads(bumped)["count"] == 2
        chromium.deliver(bumped)
        after = until(lambda: (lambda s: s if s and s[0]["body"] != first[0]["body"] else None)(chromium.shown()),
                      "the bumped like shown")
        assert len(after) == 1 and after[0]["tag"] == first[0]["tag"]
        # The newest actor's picture, else the site's icon.
        assert first[0]["icon"] == base + SITE_ICON
        assert carol.avatar_urls["small"].startswith("/media/")
        assert after[0]["icon"] == base + carol.avatar_urls["small"]
        assert after[0]["body"] == "Carol and Bob liked your post: “likeable”" and after[0]["renotify"] is True
        browser.close()


def test_a_page_whose_live_connection_is_down_gets_its_toast_from_the_worker(live_server, device, vapid):
    """No live_push here: the page's MQTT connection cannot come up. The worker still sees a
    visible Herald tab, shows nothing, and the page shows the toast from the worker's message."""
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "quiet connection")
    tablet = device()
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        chromium = Chromium(browser, base, tablet)
        page = chromium.page
        log_in(page, base, "alice")
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "off", timeout=TIMEOUT)
        page.click("#push-switch")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "on", timeout=TIMEOUT)
        page.goto(f"{base}/notifications/")
        expect(page.locator("#live-state")).not_to_have_attribute("data-state", "live")
        services.add_comment(bob, post.pk, "did you see this?")
        comment = Notification.objects.get(recipient=alice, kind="comment")
        chromium.deliver(received(tablet, 1)[0])
        toast = page.locator(f"#toasts .toast[data-id='{comment.pk}']")
        expect(toast).to_have_count(1, timeout=TIMEOUT)
        expect(toast).to_contain_text("Bob commented on your post: “did you see this?”")
        expect(page.locator(f"#notification-list li[data-id='{comment.pk}']")).to_have_count(1)
        expect(page.locator("#bell-count")).to_have_text("1")
        assert chromium.shown() == []
        assert page.evaluate("window.__push.messages.length") == 1
        browser.close()


def test_a_refused_permission_shows_blocked_and_subscribes_nothing(live_server, device, vapid):
    """Headless Chromium answers a permission request it was not granted with "denied", as a
    person clicking Block would."""
    make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        chromium = Chromium(browser, base, device(), grant=False)
        page = chromium.page
        log_in(page, base, "alice")
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "off", timeout=TIMEOUT)
        page.click("#push-switch")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "blocked", timeout=TIMEOUT)
        expect(page.locator("#push-state")).to_contain_text("Blocked by your browser")
        expect(page.locator("#push-switch")).to_be_disabled()
        expect(page.locator("#push-switch")).to_have_attribute("aria-pressed", "false")
        assert page.evaluate("window.__push.permission") == 1
        assert page.evaluate("window.__push.subscribe") == []
        assert not WebPushSubscription.objects.exists()
        page.reload()  # it stays so, without asking again
        expect(page.locator("#push-state")).to_have_attribute("data-state", "blocked", timeout=TIMEOUT)
        assert page.evaluate("window.__push.permission") == 0
        browser.close()


def test_the_switch_says_when_push_is_not_set_up_here(live_server):
    make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        page.add_init_script("window.__asked = 0; const ask = Notification.requestPermission;"
                             "Notification.requestPermission = function () { window.__asked += 1; return ask.apply(Notification, arguments); };")
        log_in(page, base, "alice")
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator("#push-state")).to_have_attribute("data-state", "unconfigured", timeout=TIMEOUT)
        expect(page.locator("#push-state")).to_have_text("Push notifications are not set up on this server.")
        expect(page.locator("#push-switch")).to_be_disabled()
        assert page.evaluate("window.__asked") == 0
        browser.close()


def test_the_matrix_disables_a_muted_kinds_channels_and_saves(live_server):
    alice, = make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        # (bypass_csp: axe-core is added to the page as an inline script.)
        page = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/settings/notifications/")
        expect(page.locator("#push-mention")).to_be_enabled()
        page.uncheck("#inapp-mention")
        expect(page.locator("#push-mention")).to_be_disabled()
        expect(page.locator("#muted-note-mention")).to_be_visible()
        expect(page.locator("#push-mention")).to_have_accessible_description("Muted: sent nowhere")
        page.check("#inapp-mention")
        expect(page.locator("#push-mention")).to_be_enabled()
        expect(page.locator("#muted-note-mention")).to_be_hidden()
        page.uncheck("#email-comment")
        page.check("#email-like")
        page.uncheck("#push-follow")
        page.uncheck("#inapp-new_post")
        page.select_option("#email-digest", "hourly")
        page.click("#save-notification-settings")
        expect(page.locator(".message.success")).to_have_text("Notification settings saved.")
        expect(page.locator("#email-digest")).to_have_value("hourly")
        expect(page.locator("#email-like")).to_be_checked()
        expect(page.locator("#email-comment")).not_to_be_checked()
        expect(page.locator("#push-follow")).not_to_be_checked()
        expect(page.locator("#push-new_post")).to_be_disabled()
        from notifier import services as notes

        prefs = notes.preferences(alice)
        assert prefs["muted_kinds"] == ["new_post"]
        assert prefs["channels"] == {"web_push": ["comment", "reply", "like", "mention"],
                                     "email": ["reply", "like", "follow", "mention"]}
        assert prefs["email_digest"] == "hourly"
        # The table fits a phone: no sideways scrolling, every box a 44 px target.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = page.locator("label[for='email-like']").bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44
        # With a muted row (disabled boxes) and the switch's state shown: no accessibility problem.
        expect(page.locator("#push-state")).to_have_attribute("data-state", "unconfigured")
        assert axe_problems(page) == []
        browser.close()
