"""In headless Chromium: the notifications list at phone and desktop width, tap target sizes, the
character counter with emoji, no Content-Security-Policy error after htmx posts, and the
"Skip to content" link."""
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Comment, Post, User

from .browser import launch, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

# Controls whose box must be at least 24×24 CSS px (WCAG 2.5.8). Links inside a sentence or a
# post's text are exempt (the "inline" exception), as are hidden and off-screen ones.
SMALL_TARGETS = """() => {
  const inline = "p a, .post-text a, .comment-text a, .helptext a, li.empty a";
  const found = [];
  for (const el of document.querySelectorAll("a[href], button, input:not([type=hidden]), select, textarea, summary")) {
    if (el.matches(inline) || el.closest(".toasts") || el.matches(".skip-link")) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.display === "none") continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.width < 24 || r.height < 24) {
      found.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className} "${(el.textContent || el.value || "").trim().slice(0, 30)}" ${r.width.toFixed(1)}x${r.height.toFixed(1)}`);
    }
  }
  return found;
}"""


def box(page, selector):
    return page.locator(selector).bounding_box()


@pytest.fixture
def notified(make_user):
    """bob with notifications of one actor and of several (grouped likes)."""
    bob = make_user("bob", display_name="Bob")
    alice = make_user("alice", display_name="Alice Archer")
    carol = make_user("carol", display_name="Carol")
    dave = make_user("dave", display_name="Dave")
    erin = make_user("erin", display_name="Erin")
    post = services.create_post(bob, "a post of bob's")
    services.follow(alice, "bob")
    services.add_comment(alice, post.pk, "Alice comments on a post of bob's with a longer sentence")
    services.create_post(alice, "Hey @bob welcome aboard, this mention is long enough to wrap a bit")
    for user in (alice, carol, dave, erin):
        services.like(user, post.pk)
    return bob


def notification_layout(page):
    """For each item: the avatars' box beyond its avatars, the gap between avatars and text, the
    width neither the avatars, the text nor the time use, and the height beyond the text's."""
    return page.evaluate("""() => [...document.querySelectorAll('#notification-list .notification-open')].map(b => {
      const a = b.querySelector('.avatars').getBoundingClientRect();
      const last = [...b.querySelectorAll('.avatars .avatar')].pop().getBoundingClientRect();
      const t = b.querySelector('.notification-text').getBoundingClientRect();
      const time = b.querySelector('time').getBoundingClientRect();
      const item = b.getBoundingClientRect();
      const sameRow = time.top < t.bottom - 4;
      return {avatarsSlack: a.right - last.right, gap: t.left - a.right,
              unused: item.width - a.width - t.width - (sameRow ? time.width : 0),
              extraHeight: item.height - t.height - (sameRow ? 0 : time.height), text: b.querySelector('.notification-text').textContent};
    })""")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_notifications_list_is_compact(live_server, notified, viewport):
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=viewport).new_page()
        log_in(page, base, "bob")
        page.goto(f"{base}/notifications/")
        expect(page.locator("#notification-list li.notification")).to_have_count(4)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        for item in notification_layout(page):
            # The avatars' box is as wide as its avatars; the text starts just after them.
            assert item["avatarsSlack"] <= 1, item
            assert item["gap"] <= 16, item
            # The text takes the rest of the width (on a phone the time goes under it).
            assert item["unused"] <= 50, item
            assert item["extraHeight"] <= 30, item  # as tall as its text (and the time under it)
        button = box(page, "#mark-all-read")
        line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#mark-all-read')).lineHeight)")
        assert button["height"] < 2 * line + 20, f"'Mark all read' wraps: {button}"
        assert button["width"] > 2 * button["height"], f"'Mark all read' is not a pill on one line: {button}"
        assert button["x"] + button["width"] <= viewport["width"]
        browser.close()


def test_tap_targets_on_a_phone(live_server, notified):
    base = live_server.url
    post = Post.objects.filter(author__username="bob").first()
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=PHONE).new_page()
        log_in(page, base, "bob")
        page.goto(f"{base}/")
        for selector in ("a.bell", "#account-menu summary", "nav.tabbar a:has-text('Home')",
                         "nav.tabbar a:has-text('Profile')"):
            b = box(page, selector)
            assert b["height"] >= 44, f"{selector}: {b}"
            assert b["width"] >= 24, f"{selector}: {b}"
        assert box(page, "a.bell")["width"] >= 44
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        page.goto(f"{base}/settings/notifications/")
        checkboxes = page.locator("input[type=checkbox]")
        assert checkboxes.count() >= 3
        for i in range(checkboxes.count()):
            b = checkboxes.nth(i).bounding_box()
            assert b["width"] >= 24 and b["height"] >= 24, b

        problems = []
        for path in ("/", f"/posts/{post.pk}/", "/u/bob/", "/notifications/", "/settings/notifications/",
                     "/settings/profile/", "/people/?q=a"):
            page.goto(base + path)
            problems += [f"{path}: {x}" for x in page.evaluate(SMALL_TARGETS)]
        assert problems == [], "controls under 24×24 px:\n" + "\n".join(problems)
        browser.close()


def test_tap_targets_on_a_desktop_keep_the_navbar(live_server, notified):
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=DESKTOP).new_page()
        log_in(page, base, "bob")
        problems = []
        for path in ("/", "/notifications/", "/settings/notifications/"):
            page.goto(base + path)
            problems += [f"{path}: {x}" for x in page.evaluate(SMALL_TARGETS)]
            # One row: the navbar did not grow into the phone layout.
            assert box(page, "header.nav")["height"] <= 60, box(page, "header.nav")
            assert abs(box(page, "a.bell")["y"] - box(page, ".nav-links > a:has-text('Home')")["y"]) < 12
        assert problems == [], "controls under 24×24 px:\n" + "\n".join(problems)
        browser.close()


def test_counter_counts_characters_not_utf16_units(live_server, make_user):
    make_user("alice", display_name="Alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        field = page.locator("#id_text")
        counter = page.locator("#id_text-count")
        field.fill("😀" * 1000)
        expect(counter).to_have_text("1,000 left")
        field.press("End")
        page.keyboard.insert_text("😀" * 10)  # typing on is not blocked by a maxlength in UTF-16 units
        expect(counter).to_have_text("990 left")
        assert page.evaluate("[...document.querySelector('#id_text').value].length") == 1010

        # Over the limit: the count goes negative, the field is invalid, the form is not sent.
        field.fill("😀" * 2001)
        expect(counter).to_have_text("1 over the limit")
        expect(counter).to_have_class(re.compile("is-over"))
        expect(field).to_have_attribute("aria-invalid", "true")
        sent = []
        page.on("request", lambda r: sent.append(r.url) if r.method == "POST" and r.url == f"{base}/" else None)
        page.click("#post-button")
        page.wait_for_timeout(500)
        assert sent == []
        expect(field).to_be_focused()
        expect(page.locator("[data-counter-live]")).to_contain_text("1 over the limit")
        assert not Post.objects.exists()

        # Back at the limit: valid again, and the server takes 2,000 emoji.
        field.press("End")
        field.press("Backspace")
        expect(counter).to_have_text("0 left")
        expect(field).not_to_have_attribute("aria-invalid", "true")
        page.click("#post-button")
        expect(page.locator("#feed article.post")).to_have_count(1)
        assert Post.objects.get().text == "😀" * 2000

        # The HTML keeps maxlength for browsers without script.
        nojs = browser.new_context(java_script_enabled=False).new_page()
        log_in(nojs, base, "alice")
        expect(nojs.locator("#id_text")).to_have_attribute("maxlength", "2000")
        browser.close()


def test_no_csp_error_after_htmx_posts_and_comments(live_server, make_user):
    alice = make_user("alice", display_name="Alice")
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text)
                if m.type == "error" or "Content Security Policy" in m.text else None)
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        page.wait_for_load_state("networkidle")
        # htmx put no <style> of its own into the page.
        assert page.evaluate("document.querySelectorAll('style').length") == 0
        for i in range(3):
            # As a person does: the textarea resized by its handle (an inline height), then sent.
            page.evaluate("document.querySelector('#id_text').style.height = '140px'")
            page.fill("#id_text", f"post number {i}")
            page.click("#post-button")
            expect(page.locator("#feed article.post").first).to_contain_text(f"post number {i}")
        page.fill("#id_text", "   ")
        page.click("#post-button")
        expect(page.locator("#id_text-error")).to_be_visible()

        page.goto(f"{base}/posts/{post.pk}/")
        for i in range(2):
            page.evaluate("document.querySelector('#id_text').style.height = '90px'")
            page.fill("#id_text", f"comment {i}")
            page.click("#comment-button")
            expect(page.locator("#comment-list li.comment")).to_have_count(i + 1)
        page.click(f"#like-button-{post.pk}")
        expect(page.locator(f"#like-button-{post.pk}")).to_have_attribute("aria-pressed", "true")
        page.wait_for_timeout(300)
        assert Comment.objects.count() == 2
        assert [e for e in errors if "Content Security Policy" in e or "inline style" in e] == []
        assert page.evaluate("document.querySelectorAll('style').length") == 0
        browser.close()


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
def test_skip_link_is_the_first_stop(live_server, make_user, logged_in):
    make_user("alice", display_name="Alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=PHONE).new_page()
        if logged_in:
            log_in(page, base, "alice")
        page.goto(f"{base}/u/alice/" if logged_in else f"{base}/")
        skip = page.locator("a.skip-link")
        assert skip.bounding_box() is None or skip.bounding_box()["y"] + skip.bounding_box()["height"] <= 0
        page.keyboard.press("Tab")
        expect(skip).to_be_focused()
        expect(skip).to_have_text("Skip to content")
        b = skip.bounding_box()
        assert b["y"] >= 0 and b["height"] >= 24 and b["x"] + b["width"] <= PHONE["width"]  # visible now
        page.keyboard.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
        page.keyboard.press("Tab")  # the next stop is inside the main content, not the navbar
        assert page.evaluate("document.querySelector('main').contains(document.activeElement)")
        browser.close()


def test_log_out_says_so(live_server, make_user):
    make_user("alice", display_name="Alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/accounts/logout/")  # typed: a page with a button, still logged in
        expect(page.locator("#logout-confirm")).to_be_visible()
        expect(page.locator("#bell-count")).to_be_attached()
        page.click("#logout-confirm")
        expect(page).to_have_url(f"{base}/accounts/login/")
        expect(page.locator(".messages")).to_contain_text("You have been logged out.")
        log_in(page, base, "alice")
        page.click("#account-menu summary")
        page.click("#nav-logout button:has-text('Log out')")
        expect(page.locator(".messages")).to_contain_text("You have been logged out.")
        assert User.objects.count() == 1
        browser.close()
