"""Pictures from the browser straight to S3, in real headless Chromium against moto's S3 server: the
composer and the avatar form send the chosen file to the bucket with a presigned POST (feed.js), the
form only the key, so no picture ever crosses Herald's request body (API Gateway refuses bodies over
~6 MB on Lambda); the picture shows, and the raw upload is deleted once it has been processed."""
from functools import partial

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from playwright.sync_api import expect, sync_playwright

from feed.models import Post, User

from .browser import launch, logged_in_page, make_users
from .live import free_port
from .pictures import halves, picture
from .test_browser_images import loaded
from .test_images_s3 import BUCKET, REGION, keys, settings_with

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def s3_server(settings, monkeypatch):
    """A moto S3 server on 127.0.0.1 (another origin than the live server's) holding the bucket of
    MEDIA_BUCKET; the default storage is that bucket, reached through AWS_S3_ENDPOINT_URL."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's state is the process's: start empty, leave nothing behind.
    reset = partial(requests.post, f"{endpoint}/moto-api/reset", timeout=10)
    try:
        reset()
        client = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        # moto's server answers CORS itself (flask-cors: any origin may POST and read the answer),
        # as the bucket's CORS rules must on AWS; these are the rules the deployment needs.
        client.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [
            {"AllowedMethods": ["POST"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"]}]})
        probe = settings_with(monkeypatch, MEDIA_BUCKET=BUCKET, AWS_REGION=REGION)
        settings.AWS_S3_ENDPOINT_URL = endpoint
        settings.MEDIA_BUCKET = BUCKET
        settings.STORAGES = {**settings.STORAGES, "default": probe.STORAGES["default"]}
        yield client, endpoint
    finally:
        reset()
        server.stop()


def recording(page):
    """Every request the page sends: (method, url, body bytes or None)."""
    sent = []
    page.on("request", lambda request: sent.append((request.method, request.url, request.post_data_buffer)))
    return sent


def herald_posts(sent, url):
    return [body for method, to, body in sent if method == "POST" and to == url]


def test_a_composer_picture_goes_to_the_bucket_and_only_its_key_to_herald(live_server, s3_server, tmp_path):
    s3, endpoint = s3_server
    make_users("alice")
    photo = tmp_path / "dusk.jpg"
    photo.write_bytes(picture(2400, 1200, fmt="JPEG", quality=95))
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        sent = recording(page)
        page.goto(f"{base}/")
        expect(page.locator("form.composer-form")).to_have_attribute("data-direct-upload", "/api/uploads/")

        # A file of a type Herald does not take: the upload route's own refusal, in the field.
        other = tmp_path / "notes.txt"
        other.write_bytes(b"words")
        page.fill("#id_text", "the sea at dusk")
        page.set_input_files("#id_image", str(other))
        page.click("#post-button")
        expect(page.locator("#id_image-error")).to_have_text("Error: Upload a JPEG, PNG, WebP or GIF image.")
        expect(page.locator("#id_image")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#id_text")).to_have_value("the sea at dusk")  # what was typed stays
        assert not Post.objects.exists() and not herald_posts(sent, f"{base}/")

        page.set_input_files("#id_image", str(photo))
        page.fill("#id_image_alt", "Waves under an orange sky")
        page.click("#post-button")
        shown = page.locator("article.post .post-image img")
        expect(shown).to_have_count(1)
        expect(shown).to_have_attribute("alt", "Waves under an orange sky")
        expect(shown).to_have_attribute("width", "1600")
        loaded(shown)
        assert shown.get_attribute("src").startswith(f"{endpoint}/{BUCKET}/posts/")

        post = Post.objects.get()
        assert post.text == "the sea at dusk" and post.image_width == 1600
        to_bucket = [to for method, to, _ in sent if method == "POST" and to.startswith(endpoint)]
        assert to_bucket == [f"{endpoint}/{BUCKET}"]  # the file went there, once
        bodies = herald_posts(sent, f"{base}/")
        assert len(bodies) == 1 and bodies[0] is not None
        assert b'name="upload"' in bodies[0] and b"uploads/" in bodies[0]
        assert b"filename=" not in bodies[0] and len(bodies[0]) < 4096  # no file in Herald's request
        assert keys(s3, "uploads/") == set() and keys(s3) == {post.image}  # the raw upload is gone
        browser.close()


def test_an_avatar_goes_to_the_bucket_and_a_damaged_one_is_the_fields_error(live_server, s3_server, tmp_path):
    s3, endpoint = s3_server
    make_users("alice")
    photo, damaged = tmp_path / "me.png", tmp_path / "broken.png"
    photo.write_bytes(halves(400, 300))
    damaged.write_bytes(b"these are words, not pixels")
    base = live_server.url
    with sync_playwright() as p:
        browser = launch(p)
        page = logged_in_page(browser, base, "alice")
        sent = recording(page)
        page.goto(f"{base}/settings/profile/")
        page.fill("#id_bio", "I like the sea")
        page.set_input_files("#id_avatar_image", str(damaged))
        page.click("button:has-text('Save')")
        expect(page.locator("#id_avatar_image-error")).to_contain_text("not an image Herald accepts")
        expect(page.locator("#id_bio")).to_have_value("I like the sea")
        assert keys(s3) == set()  # the refused upload was deleted too

        page.set_input_files("#id_avatar_image", str(photo))
        page.click("button:has-text('Save')")
        expect(page).to_have_url(f"{base}/u/alice/")
        user = User.objects.get(username="alice")
        assert user.avatar and user.bio == "I like the sea"
        big = page.locator(".profile-head img.avatar")
        loaded(big)
        assert big.get_attribute("src").startswith(f"{endpoint}/{BUCKET}/avatars/")
        bodies = herald_posts(sent, f"{base}/settings/profile/")
        assert len(bodies) == 2 and all(b"filename=" not in body and b'name="upload"' in body for body in bodies)
        assert keys(s3, "uploads/") == set()
        browser.close()
