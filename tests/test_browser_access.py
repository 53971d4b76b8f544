"""Log-out in real headless Chromium: nothing reusable stays in the tab's storage, and the user's other
open tab loses its live connection at once and says so instead of reconnecting."""
import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import launch, log_in, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HANDOVER_KEY = "herald.live.credentials"


def test_log_out_leaves_no_credentials_and_closes_the_other_tab(live_server, live_push):
    make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context()
        page, other = context.new_page(), context.new_page()
        log_in(page, base, "alice")
        wait_live(page)
        # A page hands its credentials to the next one in the same tab: move once so there is a
        # hand-over to leave behind, to the log-out page (a GET there asks to confirm).
        page.goto(f"{base}/accounts/logout/")
        wait_live(page)
        other.goto(f"{base}/")
        wait_live(other)
        other_client = other.evaluate("window.heraldLive.clientId()")
        assert other_client

        # Whatever the tab holds at that moment (a hand-over from an earlier page, or one written
        # while leaving) must not survive the log-out.
        page.evaluate("""key => window.sessionStorage.setItem(key, JSON.stringify(
            Object.assign({user: document.body.dataset.user}, {url: 'ws://x/mqtt?X-Amz-Security-Token=t'})))""",
                      HANDOVER_KEY)
        page.click("#logout-confirm")
        expect(page.locator("#id_username")).to_be_visible()  # the log-in page
        stored = page.evaluate("Object.fromEntries(Object.entries(window.sessionStorage))")
        assert HANDOVER_KEY not in stored
        assert not [key for key, value in stored.items() if "X-Amz" in value or "session_token" in value], stored
        assert set(stored) <= {"htmx-current-path-for-history"}  # htmx's own, written by the log-in page

        # The other tab's socket was closed by the server; its reconnect is refused (logged out),
        # so it stops and says so rather than retrying forever.
        expect(other.locator("#live-state")).to_have_attribute("data-state", "signed-out", timeout=10_000)
        expect(other.locator("#live-state")).to_have_text("Signed out")
        browser.close()
