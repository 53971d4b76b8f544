"""A person's path through the site in real headless Chromium: two users, follow, post, comment,
like, and an exact bell."""
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from .browser import launch
from .conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_up(page, base, username, display_name):
    page.goto(f"{base}/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_display_name", display_name)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button:has-text('Sign up')")
    expect(page.locator(".messages")).to_contain_text(f"Welcome to Herald, {display_name}!")


def bell(page):
    return page.locator("#bell-count")


def test_two_people_use_herald(live_server):
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        alice = browser.new_context().new_page()
        bob = browser.new_context().new_page()

        sign_up(alice, base, "alice", "Alice")
        sign_up(bob, base, "bob", "Bob")

        bob.goto(f"{base}/u/alice/")
        bob.click("#follow-button")
        expect(bob.locator("#follower-count")).to_have_text("1")
        expect(bob.locator("#follow-button")).to_have_text("Unfollow")

        alice.goto(f"{base}/")
        alice.fill("#id_text", "Hello <b>world</b>, @bob!")
        alice.click("button:has-text('Post')")
        post = alice.locator("article.post").first
        expect(post).to_contain_text("Hello <b>world</b>, @bob!")  # shown as text, not markup
        expect(post.locator("a.mention")).to_have_attribute("href", "/u/bob/")

        bob.goto(f"{base}/")
        expect(bell(bob)).to_have_attribute("data-unread", "1")  # the mention
        bob.locator("article.post a.time").first.click()
        bob.fill("#id_text", "Nice one")
        bob.click("button:has-text('Comment')")
        expect(bob.locator(".comment")).to_contain_text("Nice one")
        bob.locator("article.post button.action").first.click()
        expect(bob.locator("article.post .like-count").first).to_have_text("1")

        alice.goto(f"{base}/")
        expect(bell(alice)).to_have_text("3")  # follow, comment, like
        alice.click("a.bell")
        items = alice.locator("#notification-list li.notification")
        expect(items).to_have_count(3)
        expect(items.nth(0)).to_contain_text("Bob liked your post")
        expect(items.nth(1)).to_contain_text("Bob commented on your post: “Nice one”")
        expect(items.nth(2)).to_contain_text("Bob started following you.")
        items.nth(1).locator("button.notification-open").click()
        expect(alice).to_have_url(re.compile(r"/posts/\d+/#comment-\d+$"))
        # Opening the list marked everything seen (the badge counts unseen); opening the post read
        # its comment and its like: only the follow is still unread.
        expect(bell(alice)).to_have_attribute("data-unread", "1")
        expect(bell(alice)).to_be_hidden()
        alice.click("a.bell")
        alice.click("#mark-all-read")
        expect(bell(alice)).to_have_attribute("data-unread", "0")
        expect(bell(alice)).to_be_hidden()
        browser.close()
