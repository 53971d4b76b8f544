"""Links in comments, in real headless Chromium: a live comment (built in live.js from the MQTT
message) and the same comment rendered by the server after a reload carry the same anchors."""
import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services

from .browser import launch, logged_in_page, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10_000
TEXT = (
    "see https://x.test/a_(b). not javascript:alert(1) nor JaVaScRiPt:alert(2), "
    "<img src=x onerror=\"window.__pwned=1\"> & \"onmouseover=alert(3) @bob"
)
ANCHORS = """el => Array.from(el.querySelectorAll("a")).map(a => ({
    href: a.getAttribute("href"), rel: a.getAttribute("rel"), target: a.getAttribute("target"),
    text: a.textContent, cls: a.className }))"""


def test_live_comment_links_like_the_server(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "links here")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{base}/posts/{post.pk}/")
        wait_live(page)

        comment = services.add_comment(bob, post.pk, TEXT + " https://x.test/@bob")
        item = page.locator(f"#comment-{comment.pk}")
        expect(item).to_be_visible(timeout=TIMEOUT)
        text = item.locator(".comment-text")
        expect(text).to_have_class("comment-text is-live")  # built by live.js, not by the server
        expect(text).to_have_text(TEXT + " https://x.test/@bob")
        expect(text.locator("img")).to_have_count(0)
        live_anchors = text.evaluate(ANCHORS)
        live_html = text.evaluate("el => el.innerHTML")
        assert live_anchors == [
            {"href": "https://x.test/a_(b)", "rel": "nofollow ugc noopener", "target": None,
             "text": "https://x.test/a_(b)", "cls": ""},
            {"href": "/u/bob/", "rel": None, "target": None, "text": "@bob", "cls": "mention"},
            {"href": "https://x.test/@bob", "rel": "nofollow ugc noopener", "target": None,
             "text": "https://x.test/@bob", "cls": ""},
        ]

        # One URL alone: exactly one <a>, and nothing from the text ran.
        only = services.add_comment(bob, post.pk, "javascript:alert(4) www.x.test.")
        only_text = page.locator(f"#comment-{only.pk} .comment-text")
        expect(only_text).to_have_text("javascript:alert(4) www.x.test.", timeout=TIMEOUT)
        expect(only_text.locator("a")).to_have_count(1)
        expect(only_text.locator("a")).to_have_attribute("href", "https://www.x.test")
        expect(only_text.locator("a")).to_have_attribute("rel", "nofollow ugc noopener")
        expect(only_text.locator("a")).to_have_text("www.x.test")
        only_live = only_text.evaluate(ANCHORS)
        assert page.evaluate("window.__pwned") is None
        assert dialogs == []

        # The server renders the same comments with the same anchors and the same markup.
        page.reload()
        served = page.locator(f"#comment-{comment.pk} .comment-text")
        expect(served).to_have_class("comment-text")
        expect(served).to_have_text(TEXT + " https://x.test/@bob")
        assert served.evaluate(ANCHORS) == live_anchors
        assert served.evaluate("el => el.innerHTML") == live_html
        assert page.locator(f"#comment-{only.pk} .comment-text").evaluate(ANCHORS) == only_live
        assert page.evaluate("window.__pwned") is None
        assert dialogs == []
        browser.close()
