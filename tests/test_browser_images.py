"""Pictures in real headless Chromium: an avatar chosen on the edit-profile page shows on the
profile, on post cards and in a live toast; a post's picture and its alt text from the composer;
a file that is not a picture gets the form's error, and nothing is posted."""
import pytest
from playwright.sync_api import expect, sync_playwright

from feed import services
from feed.models import Post, User

from .browser import launch, logged_in_page, make_users, wait_live
from .pictures import halves, picture, upload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def loaded(locator):
    """Until the <img> has really been fetched and decoded (naturalWidth > 0)."""
    locator.first.wait_for()
    locator.page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=locator.first.element_handle(),
                                   timeout=10_000)


def test_an_avatar_from_the_edit_profile_page_shows_on_the_profile_and_on_post_cards(live_server, tmp_path):
    alice, = make_users("alice")
    services.create_post(alice, "a post from before the picture")
    photo = tmp_path / "me.png"
    photo.write_bytes(halves(400, 300))
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_bytes(b"these are words, not pixels")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/settings/profile/")
        page.set_input_files("#id_avatar_image", str(not_a_picture))
        page.click("button:has-text('Save')")
        expect(page.locator("#id_avatar_image-error")).to_contain_text("not an image Herald accepts")
        expect(page.locator("#id_avatar_image")).to_have_attribute("aria-invalid", "true")

        page.set_input_files("#id_avatar_image", str(photo))
        page.click("button:has-text('Save')")
        expect(page).to_have_url(f"{base}/u/alice/")
        user = User.objects.get(username="alice")
        assert user.avatar
        big = page.locator(".profile-head img.avatar")
        expect(big).to_have_attribute("src", user.avatar_urls["medium"])
        loaded(big)
        assert big.evaluate("img => img.naturalWidth") in (96, 256)  # the 2x picture on a dense screen
        card = page.locator("article.post .post-head img.avatar")
        expect(card).to_have_attribute("src", user.avatar_urls["small"])
        loaded(card)
        expect(page.locator("article.post .author")).to_have_text("Alice")  # the picture adds no text
        browser.close()


def test_a_picture_with_alt_text_from_the_composer_and_a_bad_file_refused(live_server, tmp_path):
    make_users("alice")
    good, bad = tmp_path / "dusk.jpg", tmp_path / "virus.gif"
    good.write_bytes(picture(2000, 1000, fmt="JPEG"))
    bad.write_bytes(b"GIF89a\x00\x00 and then nothing useful")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/")
        expect(page.locator("#id_image_alt")).to_be_hidden()  # until a picture is chosen
        page.fill("#id_text", "a bad file")
        page.set_input_files("#id_image", str(bad))
        page.click("#post-button")
        expect(page.locator("#id_image-error")).to_be_visible()
        expect(page.locator("#id_image-error")).to_contain_text("Error:")
        assert not Post.objects.exists()

        page.fill("#id_text", "the sea at dusk")
        page.set_input_files("#id_image", str(good))
        page.fill("#id_image_alt", 'Waves under an orange sky <b>"quoted"</b>')
        page.click("#post-button")
        shown = page.locator("article.post .post-image img")
        expect(shown).to_have_count(1)
        expect(shown).to_have_attribute("alt", 'Waves under an orange sky <b>"quoted"</b>')
        expect(shown).to_have_attribute("width", "1600")
        expect(shown).to_have_attribute("height", "800")
        loaded(shown)
        assert page.locator("#id_image-error").count() == 0
        assert page.locator("#id_image").input_value() == ""  # the composer is cleared

        post = Post.objects.get()
        page.goto(f"{base}/posts/{post.pk}/")
        expect(page.locator(".post-image img")).to_have_attribute("src", f"/media/{post.image}")
        loaded(page.locator(".post-image img"))
        browser.close()


def test_a_live_toast_shows_the_actors_avatar(live_server, live_push):
    alice, bob = make_users("alice", "bob")
    services.set_avatar(bob, upload(picture(50, 50, color=(10, 160, 60))))
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        page.goto(f"{base}/notifications/")
        wait_live(page)
        services.follow(bob, "alice")
        toast = page.locator("#toasts .toast")
        expect(toast).to_contain_text("Bob started following you.")
        face = toast.locator("img.avatar")
        expect(face).to_have_attribute("src", bob.avatar_urls["small"])
        loaded(face)
        item = page.locator("#notification-list li.notification").first
        expect(item.locator("img.avatar")).to_have_attribute("src", bob.avatar_urls["small"])
        browser.close()
