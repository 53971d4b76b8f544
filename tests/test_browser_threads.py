"""Threads in real headless Chromium against the local emulator, two users on one post page:
an inline reply shows threaded live in the other window, an edit in place shows its new text and
"edited" live, and the follow-post toggle."""
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Comment

from .browser import launch, logged_in_page, make_users, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5_000


def open_post(browser, base, username, post):
    page = logged_in_page(browser, base, username)
    page.goto(f"{base}/posts/{post.pk}/")
    wait_live(page)
    return page


def test_an_inline_reply_shows_threaded_live_in_the_other_window(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "a thread")
    top = services.add_comment(alice, post.pk, "start here")
    later = services.add_comment(alice, post.pk, "a later comment")
    with sync_playwright() as p:
        browser = launch(p)
        alice_page = open_post(browser, live_server.url, "alice", post)
        bob_page = open_post(browser, live_server.url, "bob", post)

        bob_page.locator(f"#reply-box-{top.pk} > summary").click()
        reply_box = bob_page.locator(f"#reply-text-{top.pk}")
        expect(reply_box).to_be_visible()
        reply_box.fill("<b>not bold</b> @alice")
        bob_page.click(f"#reply-button-{top.pk}")

        # Bob's own page: the reply under the comment it answers, once, and the form cleared.
        mine = bob_page.locator(f"#replies-{top.pk} > li.comment.reply")
        expect(mine).to_have_count(1, timeout=TIMEOUT)
        expect(bob_page.locator(f"#reply-text-{top.pk}")).to_have_value("")
        reply = Comment.objects.get(parent=top)
        assert reply.author == bob

        # Alice's window: live, in the thread (not after the later comment), escaped, mention linked.
        theirs = alice_page.locator(f"#replies-{top.pk} > #comment-{reply.pk}")
        expect(theirs).to_be_visible(timeout=TIMEOUT)
        expect(theirs.locator(".comment-text")).to_have_text("<b>not bold</b> @alice")
        expect(theirs.locator("b")).to_have_count(0)
        expect(theirs.locator("a.mention")).to_have_attribute("href", "/u/alice/")
        expect(alice_page.locator("#comment-list > li.comment")).to_have_count(2)  # still two top-level
        expect(alice_page.locator(f"#comment-list > li.comment").last).to_have_id(f"comment-{later.pk}")
        expect(alice_page.locator(f"#post-{post.pk} .comment-count")).to_have_text("3")
        bob_page.wait_for_timeout(300)
        expect(bob_page.locator(f"#comment-{reply.pk}")).to_have_count(1)  # push and htmx: shown once

        # Alice answers the reply that arrived live (its Reply box built by live.js): it joins the
        # same thread, in both windows.
        theirs.locator(f"#reply-box-{reply.pk} > summary").click()
        alice_page.fill(f"#reply-text-{reply.pk}", "answering the reply")
        alice_page.click(f"#reply-button-{reply.pk}")
        answer = alice_page.locator(f"#replies-{top.pk} > li.comment.reply", has_text="answering the reply")
        expect(answer).to_have_count(1, timeout=TIMEOUT)
        assert Comment.objects.get(text="answering the reply").parent_id == top.pk
        expect(bob_page.locator(f"#replies-{top.pk} > li.comment.reply")).to_have_count(2, timeout=TIMEOUT)
        browser.close()


def test_an_edit_in_place_shows_the_new_text_and_edited_live(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    post = services.create_post(alice, "edit me")
    mine = services.add_comment(bob, post.pk, "first version")
    with sync_playwright() as p:
        browser = launch(p)
        alice_page = open_post(browser, live_server.url, "alice", post)
        bob_page = open_post(browser, live_server.url, "bob", post)
        body = f"#comment-body-{mine.pk}"

        # Cancel brings the text back untouched.
        bob_page.locator(f"#comment-{mine.pk} .edit-link").click()
        expect(bob_page.locator(f"{body} textarea")).to_have_value("first version")
        bob_page.locator(f"{body} >> text=Cancel").click()
        expect(bob_page.locator(f"{body} .comment-text")).to_have_text("first version")

        bob_page.locator(f"#comment-{mine.pk} .edit-link").click()
        bob_page.locator(f"{body} textarea").fill("second <i>version</i> @alice see www.example.com")
        bob_page.locator(f"{body} button:has-text('Save')").click()
        expect(bob_page.locator(f"{body} .comment-text")).to_have_text(
            "second <i>version</i> @alice see www.example.com", timeout=TIMEOUT)
        expect(bob_page.locator(f"{body} .edited")).to_contain_text("edited")

        # Alice's window, live: the new text rendered as the server renders it, and "edited".
        text = alice_page.locator(f"{body} .comment-text")
        expect(text).to_have_text("second <i>version</i> @alice see www.example.com", timeout=TIMEOUT)
        expect(text.locator("i")).to_have_count(0)
        expect(text.locator("a.mention")).to_have_attribute("href", "/u/alice/")
        expect(text.locator("a[rel~=nofollow]")).to_have_attribute("href", "https://www.example.com")
        when = alice_page.locator(f"{body} .edited time")
        expect(when).to_have_text("just now")
        expect(when).to_have_attribute("title", re.compile(r"^Edited \S"))
        # What alice sees live is what the server renders on a reload: the same text and links.
        links = "el => [el.textContent, [...el.querySelectorAll('a')].map(a => [a.textContent, a.getAttribute('href')])]"
        live = text.evaluate(links)
        alice_page.reload()
        assert alice_page.locator(f"{body} .comment-text").evaluate(links) == live
        browser.close()


def test_following_and_unfollowing_a_post_from_its_page(live_server, live_push):
    alice, bob, carol = make_users("alice", "bob", "carol")
    post = services.create_post(alice, "follow this")
    with sync_playwright() as p:
        browser = launch(p)
        page = open_post(browser, live_server.url, "bob", post)
        button = page.locator("#post-follow-button")
        expect(button).to_have_text("Follow post")
        expect(button).to_have_attribute("aria-pressed", "false")
        button.click()
        expect(page.locator("#post-follow-button")).to_have_text("Unfollow post", timeout=TIMEOUT)
        expect(page.locator("#post-follow-button")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#post-follow-state")).to_have_text("You will be told of new comments here.")
        assert services.follows_post(bob, post.pk)

        # A comment on the post reaches bob's bell while he follows it.
        services.add_comment(carol, post.pk, "hello followers")
        expect(page.locator("#bell-count")).to_have_text("1", timeout=TIMEOUT)

        page.locator("#post-follow-button").click()
        expect(page.locator("#post-follow-button")).to_have_text("Follow post", timeout=TIMEOUT)
        assert not services.follows_post(bob, post.pk)
        page.reload()
        expect(page.locator("#post-follow-button")).to_have_text("Follow post")
        browser.close()
