"""Rough edges, in real headless Chromium: like, follow, comment and post without a page load
(htmx), the character counter, errors a screen reader hears, the landing page, and axe-core's
accessibility check of the main pages at desktop and phone width."""
import json
import re

import pytest
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Follow, Post, User

from .browser import launch, log_in
from .pictures import picture, upload
from .conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = settings.BASE_DIR / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}



def mark(page):
    """A marker that only survives if the page is not reloaded."""
    page.evaluate("window.__marker = 'still here'")


def contrast(page, text_selector, background_selector) -> float:
    """WCAG contrast ratio of an element's text colour on another element's background."""
    def luminance(rgb):
        channels = [c / 255 for c in rgb]
        channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    def colour(selector, prop):
        value = page.eval_on_selector(selector, f"e => getComputedStyle(e)['{prop}']")
        return [int(x) for x in re.findall(r"\d+", value)[:3]]

    light, dark = sorted([luminance(colour(text_selector, "color")),
                          luminance(colour(background_selector, "backgroundColor"))], reverse=True)
    return (light + 0.05) / (dark + 0.05)


def assert_not_reloaded(page, url):
    assert page.url == url
    assert page.evaluate("window.__marker") == "still here"


@pytest.fixture
def people(make_user):
    alice = make_user("alice", display_name="Alice")
    bob = make_user("bob", display_name="Bob")
    return alice, bob


def test_like_follow_comment_and_post_without_a_page_load(live_server, people):
    alice, bob = people
    post = services.create_post(alice, "hello from alice")
    services.follow(bob, "alice")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        log_in(page, base, "bob")

        # Like on the home feed: the count and the pressed state change, the page stays.
        page.goto(f"{base}/")
        mark(page)
        button = page.locator(f"#like-button-{post.pk}")
        expect(button).to_have_attribute("aria-pressed", "false")
        expect(button).to_have_accessible_name("Like, 0 likes")
        button.click()
        expect(button).to_have_attribute("aria-pressed", "true")
        expect(button.locator(".like-count")).to_have_text("1")
        expect(button).to_have_accessible_name("Like, 1 like")
        expect(button).to_be_focused()  # the focus stays on the button htmx swapped
        assert contrast(page, f"#like-button-{post.pk}", f"#post-{post.pk}") >= 4.5  # the pink, pressed
        assert_not_reloaded(page, f"{base}/")
        button.click()
        expect(button).to_have_attribute("aria-pressed", "false")
        expect(button.locator(".like-count")).to_have_text("0")
        button.click()
        expect(button).to_have_attribute("aria-pressed", "true")
        assert post.likes.filter(user=bob).exists()

        # Post from the composer: the card on top, the composer cleared.
        page.fill("#id_text", "a new post, no reload")
        page.click("#post-button")
        first = page.locator("#feed article.post").first
        expect(first).to_contain_text("a new post, no reload")
        expect(page.locator("#id_text")).to_have_value("")
        assert_not_reloaded(page, f"{base}/")
        assert Post.objects.filter(author=bob, text="a new post, no reload").exists()
        # An error comes back in the form, focused and described, still without a reload.
        page.fill("#id_text", "   ")
        page.click("#post-button")
        expect(page.locator("#id_text-error")).to_contain_text("Error: Post cannot be empty.")
        expect(page.locator("#id_text")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#id_text")).to_be_focused()
        assert_not_reloaded(page, f"{base}/")

        # Comment on the post page: appended to the list, the form cleared, the count worded.
        page.goto(f"{base}/posts/{post.pk}/")
        mark(page)
        url = page.url
        expect(page.locator("#comment-list .empty")).to_be_visible()
        page.fill("#id_text", "first comment")
        page.click("#comment-button")
        expect(page.locator("#comment-list li.comment")).to_have_count(1)
        expect(page.locator("#comment-list li.comment")).to_contain_text("first comment")
        expect(page.locator("#comment-list .empty")).to_be_hidden()
        expect(page.locator("#id_text")).to_have_value("")
        expect(page.locator(f"#comments-link-{post.pk}")).to_have_text(re.compile(r"^\s*1 comment\s*$"))
        page.fill("#id_text", "second")
        page.click("#comment-button")
        expect(page.locator("#comment-list li.comment")).to_have_count(2)
        expect(page.locator(f"#comments-link-{post.pk}")).to_have_text(re.compile(r"^\s*2 comments\s*$"))
        assert_not_reloaded(page, url)

        # Follow and unfollow on a profile: the button and the counts, worded.
        carol = User.objects.create_user("carol", password=PASSWORD, display_name="Carol")
        page.goto(f"{base}/u/carol/")
        mark(page)
        expect(page.locator("#profile-stats")).to_contain_text("0 followers")
        page.click("#follow-button")
        expect(page.locator("#follow-button")).to_have_text("Unfollow")
        expect(page.locator("#follower-count")).to_have_text("1")
        expect(page.locator("#profile-stats")).to_contain_text("1 follower")
        expect(page.locator("#follow-button")).to_be_focused()
        page.click("#follow-button")
        expect(page.locator("#follow-button")).to_have_text("Follow")
        expect(page.locator("#profile-stats")).to_contain_text("0 followers")
        assert_not_reloaded(page, f"{base}/u/carol/")
        assert not Follow.objects.filter(follower=bob, followee=carol).exists()
        browser.close()


def test_forms_still_work_without_javascript(live_server, people):
    alice, _ = people
    post = services.create_post(alice, "hello")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(java_script_enabled=False).new_page()
        log_in(page, base, "bob")
        page.goto(f"{base}/posts/{post.pk}/")
        page.click(f"#like-button-{post.pk}")
        expect(page).to_have_url(re.compile(rf"/posts/{post.pk}/#post-{post.pk}$"))
        expect(page.locator(f"#like-button-{post.pk}")).to_have_attribute("aria-pressed", "true")
        page.fill("#id_text", "no script")
        page.click("#comment-button")
        expect(page).to_have_url(re.compile(rf"/posts/{post.pk}/#comment-\d+$"))
        expect(page.locator("#comment-list")).to_contain_text("no script")
        page.goto(f"{base}/u/alice/")
        page.click("#follow-button")
        expect(page.locator("#follower-count")).to_have_text("1")
        browser.close()


def test_character_counter(live_server, people):
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/")
        field = page.locator("#id_text")
        counter = page.locator("#id_text-count")
        expect(counter).to_have_text("2,000 left")
        assert "id_text-count" in field.get_attribute("aria-describedby").split()
        expect(field).to_have_attribute("data-maxlength", "2000")  # the counter enforces it (maxlength without JS)
        field.fill("x" * 13)
        expect(counter).to_have_text("1,987 left")
        expect(counter).not_to_have_class(re.compile("is-warning"))
        field.fill("x" * 1950)
        expect(counter).to_have_text("50 left")
        expect(counter).to_have_class(re.compile("is-warning"))
        live = page.locator("[data-counter-live]")
        expect(live).to_have_attribute("aria-live", "polite")
        expect(live).to_have_text("50 left")  # announced (throttled), near the limit only
        field.fill("x" * 2100)  # over the limit: said, marked invalid, and not sent
        expect(counter).to_have_text("100 over the limit")
        expect(field).to_have_attribute("aria-invalid", "true")
        # The comment form has one too, and it comes back after an htmx swap.
        post = services.create_post(User.objects.get(username="alice"), "hi")
        page.goto(f"{base}/posts/{post.pk}/")
        page.fill("#id_text", "abc")
        expect(page.locator("#id_text-count")).to_have_text("1,997 left")
        page.click("#comment-button")
        expect(page.locator("#comment-list li.comment")).to_have_count(1)
        expect(page.locator("#id_text-count")).to_have_text("2,000 left")
        browser.close()


def test_errors_are_focused_and_described(live_server, people):
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        page.goto(f"{base}/accounts/signup/")
        page.fill("#id_username", "bad name")
        page.fill("#id_password1", PASSWORD)
        page.fill("#id_password2", PASSWORD)
        page.click("button:has-text('Sign up')")
        username = page.locator("#id_username")
        expect(username).to_be_focused()
        expect(username).to_have_attribute("aria-invalid", "true")
        expect(username).to_have_accessible_description(re.compile(r"Error: .*letters, digits and underscores"))
        expect(page.locator("#id_username-error")).to_contain_text("Error:")

        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "wrong password")
        page.click("button:has-text('Log in')")
        expect(page.locator("#login-error")).to_contain_text("Error:")
        expect(page.locator("#id_username")).to_be_focused()
        expect(page.locator("#id_password")).to_have_attribute("aria-invalid", "true")

        log_in(page, base, "alice")
        page.goto(f"{base}/settings/profile/")
        page.evaluate("document.querySelector('#id_display_name').removeAttribute('maxlength')")
        page.fill("#id_display_name", "x" * 200)  # past the browser's limit, the server's refuses it
        page.click("button:has-text('Save')")
        expect(page.locator("#id_display_name")).to_be_focused()
        expect(page.locator("#id_display_name")).to_have_attribute("aria-invalid", "true")
        browser.close()


def test_landing_page_and_favicon(live_server):
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context().new_page()
        violations = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{base}/")
        page.wait_for_load_state("networkidle")
        assert page.url == f"{base}/"
        assert violations == []
        expect(page.locator("h1")).to_contain_text("Herald")
        page.click("#landing-signup")
        expect(page).to_have_url(f"{base}/accounts/signup/")
        page.goto(f"{base}/")
        page.click("#landing-login")
        expect(page).to_have_url(f"{base}/accounts/login/")
        icon = page.locator("link[rel=icon][type='image/svg+xml']").get_attribute("href")
        response = page.request.get(base + icon)
        assert response.status == 200 and b"<svg" in response.body()
        browser.close()


def test_profile_header_fits_a_phone(live_server, make_user):
    make_user("alice", display_name="Alexandrina Featherstonehaugh-Worthington")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_context(viewport=PHONE).new_page()
        log_in(page, base, "alice")
        page.goto(f"{base}/u/alice/")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the profile page scrolls sideways: {width}px"
        for selector in ("#notification-settings-link", ".profile-head h1", "#profile-stats"):
            box = page.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
        browser.close()


# --- axe-core ---------------------------------------------------------------------------------

# The pages axe checks, at both widths: add a page here ({post}: alice's post, with a picture and a
# thread; {own}: bob's post; {comment}: bob's comment). Visitors' pages are checked logged out, the
# rest logged in as bob.
AXE_ANONYMOUS_PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/no-such-page/"]
AXE_PAGES = ["/", "/posts/{post}/", "/u/alice/", "/u/bob/", "/u/alice/followers/", "/people/?q=a",
             "/people/?q=harbour&type=posts", "/people/", "/notifications/", "/notifications/?filter=mentions",
             "/notifications/?filter=unread", "/settings/notifications/", "/settings/profile/",
             "/settings/password/", "/posts/{own}/edit/", "/comments/{comment}/edit/", "/posts/999999/"]
# Best-practice rules that must run too (axe runs them by default; said here so it stays so).
AXE_RULES = {rule: {"enabled": True} for rule in ("landmark-unique", "page-has-heading-one", "region")}


def axe_problems(page) -> list[str]:
    """Every axe-core violation on the page, of any impact, one readable line each."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("rules => axe.run(document, {resultTypes: ['violations'], rules})", AXE_RULES)
    found = []
    for v in result["violations"]:
        targets = "; ".join(", ".join(n["target"]) for n in v["nodes"][:5])
        found.append(f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x: {targets})")
    return found


def test_axe_finds_no_problem_on_the_main_pages(live_server, make_user):
    assert AXE.is_file(), "axe-core is missing: run make npm (npm ci)"
    alice = make_user("alice", display_name="Alice", bio="Writes about harbours.")
    bob = make_user("bob", display_name="Bob")
    services.follow(bob, "alice")
    services.follow(alice, "bob")
    services.set_avatar(alice, upload(picture(120, 90)))
    alice.refresh_from_db()
    post = services.create_post(alice, "Sunrise over the harbour, @bob https://example.org/harbour",
                                image=upload(picture(400, 300)), image_alt="The harbour at sunrise")
    own = services.create_post(bob, "Three things I learned this week")
    comment = services.add_comment(bob, post.pk, "Beautiful! @alice")
    services.add_comment(alice, post.pk, "Thank you, @bob", parent_id=comment.pk)  # a thread; bob: reply
    services.like(bob, post.pk)
    services.follow(make_user("carol", display_name="Carol"), "bob")  # bob: a follower to follow back
    base = live_server.url
    problems = []
    with sync_playwright() as p:
        browser = launch(p)
        for viewport in (DESKTOP, PHONE):
            page = browser.new_context(viewport=viewport, bypass_csp=True).new_page()  # axe runs inline
            for path in AXE_ANONYMOUS_PAGES:
                page.goto(base + path)
                problems += [f"{viewport['width']}px {path} (anonymous): {x}" for x in axe_problems(page)]
            log_in(page, base, "bob")
            for path in AXE_PAGES:
                page.goto(base + path.format(post=post.pk, own=own.pk, comment=comment.pk))
                page.wait_for_load_state("networkidle")
                problems += [f"{viewport['width']}px {path}: {x}" for x in axe_problems(page)]
            # What opens in place: the account menu, and the dialog a delete asks in.
            page.goto(base + "/")
            page.click("#account-menu summary")
            problems += [f"{viewport['width']}px / (menu open): {x}" for x in axe_problems(page)]
            page.keyboard.press("Escape")
            page.locator("form[data-delete] button").first.click()
            expect(page.locator("#delete-dialog")).to_be_visible()
            problems += [f"{viewport['width']}px / (delete dialog): {x}" for x in axe_problems(page)]
            page.click("#delete-dialog-confirm")
            expect(page.locator("#undo-bar")).to_contain_text("Post deleted")
            problems += [f"{viewport['width']}px / (undo bar): {x}" for x in axe_problems(page)]
            page.locator("#undo-bar button").click()  # undone: nothing is sent
            page.context.close()
        browser.close()
    print("\n".join(problems) or "axe: no violations")
    assert problems == [], "axe-core found:\n" + "\n".join(problems)


def test_axe_is_a_build_dependency_not_served():
    package = json.loads((settings.BASE_DIR / "package.json").read_text())
    assert "axe-core" in package.get("devDependencies", {}) or "axe-core" in package.get("dependencies", {})
    assert not any("axe" in str(entry) for entry in [*settings.NPM_STATIC_FILES, *settings.NPM_STATIC_FILES.values()])
    versions = {**package.get("dependencies", {}), **package.get("devDependencies", {})}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in versions.values()), "pin exact versions"
