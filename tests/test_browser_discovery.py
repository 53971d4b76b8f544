"""Finding people in real headless Chromium: a newcomer searches from the navbar, follows someone
from the results, and the home page then suggests others, not that person."""
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import User

from .browser import launch
from .conftest import PASSWORD
from .test_browser_feed import sign_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_search_follow_and_who_to_follow(live_server):
    bob = User.objects.create_user("bob", password=PASSWORD, display_name="Bob Builder")
    User.objects.create_user("roberta", password=PASSWORD, display_name="Bobbie <i>R</i>")
    carol = User.objects.create_user("carol", password=PASSWORD, display_name="Carol")
    services.follow(carol, bob.username)
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        sign_up(page, base, "newbie", "Newbie")

        page.fill("#nav-search-q", "BOB")
        page.press("#nav-search-q", "Enter")
        expect(page).to_have_url(re.compile(r"/people/\?q=BOB$"))
        results = page.locator("#search-results li.person")
        expect(results).to_have_count(2)
        expect(results.nth(0)).to_contain_text("Bob Builder")  # one follower: first
        expect(results.nth(1)).to_contain_text("Bobbie <i>R</i>")  # text, not markup
        expect(results.nth(0).locator("a.person-name")).to_have_attribute("href", "/u/bob/")

        results.nth(0).get_by_role("button", name="Follow Bob Builder").click()
        expect(page).to_have_url(re.compile(r"/people/\?q=BOB$"))
        expect(page.locator("#search-results li.person").nth(0).get_by_role("button")).to_have_text("Unfollow")
        assert services.get_user("newbie").following_set.filter(followee=bob).exists()

        page.goto(f"{base}/")
        box = page.locator("section.who-to-follow")
        expect(box).to_contain_text("Who to follow")
        expect(box.locator("li.person")).to_have_count(2)
        expect(box).to_contain_text("Carol")
        expect(box).not_to_contain_text("Bob Builder")
        expect(page.locator("a", has_text="find people to follow")).to_have_attribute("href", "/people/")
        browser.close()


def test_following_from_who_to_follow_updates_the_line_in_place(live_server):
    alice = User.objects.create_user("alice", password=PASSWORD, display_name="Alice")
    carol = User.objects.create_user("carol", password=PASSWORD, display_name="Carol")
    services.follow(carol, "alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        sign_up(page, base, "newbie", "Newbie")
        page.evaluate("window.__marker = 'still here'")
        box = page.locator("section.who-to-follow")
        line = box.locator("li.person", has_text="Alice")
        expect(line).to_contain_text("1 follower")
        page.evaluate("window.scrollTo(0, 200)")
        line.get_by_role("button", name="Follow Alice").click()
        expect(line.get_by_role("button", name="Unfollow Alice")).to_be_visible()
        expect(line).to_contain_text("2 followers")
        assert page.evaluate("window.__marker") == "still here"  # no page load
        assert User.objects.get(username="newbie").following_set.filter(followee=alice).exists()
        line.get_by_role("button", name="Unfollow Alice").click()
        expect(line.get_by_role("button", name="Follow Alice")).to_be_visible()
        expect(line).to_contain_text("1 follower")
        browser.close()

        # Without JavaScript the same form comes back to the page it was on, not to the profile.
        page = launch(p).new_context(java_script_enabled=False).new_page()
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", "carol")
        page.fill("#id_password", PASSWORD)
        page.click("button:has-text('Log in')")
        page.goto(f"{base}/people/?q=new")
        page.locator("#search-results li.person", has_text="Newbie").get_by_role("button", name="Follow Newbie").click()
        expect(page).to_have_url(re.compile(r"/people/\?q=new$"))
        expect(page.locator("#search-results li.person", has_text="Newbie").get_by_role("button")).to_have_text("Unfollow")
