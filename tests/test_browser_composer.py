"""A composer's error goes as soon as the box is edited: "cannot be empty" must not stay beside
text, nor keep the field marked invalid and described by a message that no longer applies."""
import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services

from .browser import launch, logged_in_page, make_users

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_server_error_clears_when_the_box_is_edited(live_server):
    alice, = make_users("alice")
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        for url, button in ((f"{base}/", "#post-button"), (f"{base}/posts/{post.pk}/", "#comment-button")):
            page.goto(url)
            field = page.locator("#id_text")
            field.fill("   ")
            page.click(button)
            error = page.locator("#id_text-error")
            expect(error).to_contain_text("cannot be empty")
            expect(field).to_have_attribute("aria-invalid", "true")
            assert "id_text-error" in field.get_attribute("aria-describedby")

            field.press("End")
            page.keyboard.type("now with words")
            expect(error).to_have_count(0)
            expect(field).not_to_have_attribute("aria-invalid", "true")
            assert "id_text-error" not in (field.get_attribute("aria-describedby") or "")
            page.click(button)  # and it sends
            expect(page.get_by_text("now with words").first).to_be_visible()
        browser.close()
