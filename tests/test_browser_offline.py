"""Offline is a banner anyone notices, shown while the browser has no network and gone when it is
back (and the page is live again)."""
import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import launch, logged_in_page, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_offline_banner_shows_while_the_network_is_gone(live_server, live_push):
    make_users("alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/")
        wait_live(page)
        banner = page.locator(".offline-banner")
        expect(banner).to_be_hidden()
        page.context.set_offline(True)
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("offline")
        page.context.set_offline(False)
        expect(banner).to_be_hidden(timeout=30_000)
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=30_000)
        browser.close()
