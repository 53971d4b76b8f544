"""Keyboard shortcuts: j / k between posts, g h / g n to go, ? for the list; never while typing."""
import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services

from .browser import launch, logged_in_page, make_users

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def focused_post(page):
    return page.evaluate("document.activeElement.closest('article.post')?.id || null")


def test_shortcuts_move_between_posts_go_places_and_list_themselves(live_server):
    alice, = make_users("alice")
    posts = [services.create_post(alice, f"post {i}") for i in range(3)]
    newest_first = [f"post-{p.pk}" for p in reversed(posts)]
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/")
        expect(page.locator("article.post")).to_have_count(3)
        page.locator("body").click(position={"x": 5, "y": 300})  # nothing focused: the keys go to the page

        page.keyboard.press("j")
        assert focused_post(page) == newest_first[0]
        page.keyboard.press("j")
        page.keyboard.press("j")
        page.keyboard.press("j")  # past the last: it stays there
        assert focused_post(page) == newest_first[2]
        page.keyboard.press("k")
        assert focused_post(page) == newest_first[1]

        dialog = page.locator("#shortcuts")
        expect(dialog).to_be_hidden()
        page.keyboard.press("?")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Next / previous post")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()

        # Typing in the composer types: no shortcut fires.
        page.click("#id_text")
        page.keyboard.type("jk?gn")
        expect(page.locator("#id_text")).to_have_value("jk?gn")
        expect(dialog).to_be_hidden()
        assert page.url == f"{base}/"

        page.locator("body").click(position={"x": 5, "y": 300})
        page.keyboard.press("g")
        page.keyboard.press("n")
        page.wait_for_url(f"{base}/notifications/")
        page.keyboard.press("g")
        page.keyboard.press("h")
        page.wait_for_url(f"{base}/")
        browser.close()
