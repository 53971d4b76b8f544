"""The pages' way past API Gateway's payload limit: with S3 storage the composer and the avatar form
carry the upload route and a hidden `upload` field (feed.js sends the file straight to the bucket
and the form only its key); the key is held to the API's rule and read through the API's path
(checked, processed, the raw upload deleted); refusals are form errors with nothing stored. The
CSP lets pages reach the bucket's origin, and only with a bucket. Real boto3 against moto's S3."""
from urllib.parse import urlsplit

import pytest

from feed import media
from feed.models import Post

from .pictures import halves, picture
from .test_headers import directives
from .test_images_s3 import BUCKET, keys, s3  # noqa: F401  (s3 is a fixture)

pytestmark = pytest.mark.django_db


def uploaded(client_s3, user, content: bytes, name="photo") -> str:
    """An object where the browser's presigned POST would have put it."""
    key = f"{media.UPLOAD_PREFIX}/{user.pk}/{name}"
    client_s3.put_object(Bucket=BUCKET, Key=key, Body=content, ContentType="image/png")
    return key


def test_the_composer_posts_a_direct_upload_and_its_raw_object_is_deleted(s3, client, alice):
    key = uploaded(s3, alice, picture(300, 200))
    client.force_login(alice)
    r = client.post("/", {"text": "from the bucket", "upload": key, "image_alt": "red"}, headers={"HX-Request": "true"})
    assert r.status_code == 200
    post = Post.objects.get()
    assert (post.image_width, post.image_height, post.image_alt) == (300, 200, "red")
    assert keys(s3) == {post.image}  # the re-encoded copy only: the raw upload is gone
    assert s3.get_object(Bucket=BUCKET, Key=post.image)["Body"].read()[:4] == b"RIFF"
    assert b"from the bucket" in r.content and b'data-direct-upload="/api/uploads/"' in r.content  # the fresh composer


def test_the_avatar_form_takes_a_direct_upload(s3, client, alice):
    key = uploaded(s3, alice, halves(120, 80))
    client.force_login(alice)
    r = client.post("/settings/profile/", {"display_name": "Al", "bio": "", "upload": key})
    assert r.status_code == 302
    alice.refresh_from_db()
    assert alice.avatar and alice.display_name == "Al"
    assert keys(s3) == set(media.avatar_names(alice.avatar))


@pytest.mark.parametrize("page", ["/", "/settings/profile/"])
def test_someone_elses_key_is_a_form_error_and_nothing_is_stored(s3, client, alice, bob, page):
    key = uploaded(s3, alice, picture())
    client.force_login(bob)
    r = client.post(page, {"text": "not mine", "display_name": "Bob", "upload": key})
    assert r.status_code == 200
    assert "That is not one of your uploads." in r.content.decode()
    assert 'aria-invalid="true"' in r.content.decode()
    assert not Post.objects.exists()
    bob.refresh_from_db()
    assert bob.avatar == "" and bob.display_name == "Bob"
    assert keys(s3) == {key}  # someone else's upload is left alone


def test_a_missing_or_bad_upload_is_a_form_error_and_nothing_is_kept(s3, client, alice):
    client.force_login(alice)
    r = client.post("/", {"text": "gone", "upload": f"uploads/{alice.pk}/never-sent"})
    assert r.status_code == 200 and "There is no such upload" in r.content.decode()
    assert 'id="id_image-error"' in r.content.decode()
    key = uploaded(s3, alice, b"<html>not a picture</html>")
    r = client.post("/settings/profile/", {"display_name": "", "bio": "", "upload": key})
    assert r.status_code == 200 and "not an image Herald accepts" in r.content.decode()
    assert 'id="id_avatar_image-error"' in r.content.decode()
    assert not Post.objects.exists() and keys(s3) == set()  # refused: the raw upload is deleted too
    alice.refresh_from_db()
    assert alice.avatar == ""


def test_a_file_and_an_upload_together_are_refused(s3, client, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    key = uploaded(s3, alice, picture())
    client.force_login(alice)
    r = client.post("/", {"text": "twice", "upload": key, "image": SimpleUploadedFile("a.png", picture())})
    assert r.status_code == 200 and "The picture came twice" in r.content.decode()
    assert not Post.objects.exists() and keys(s3) == {key}


def test_the_forms_carry_the_upload_route_only_with_a_bucket(client, alice, request):
    client.force_login(alice)
    for page in ("/", "/settings/profile/"):
        html = client.get(page).content.decode()
        assert "data-direct-upload" not in html and 'name="upload"' not in html
    # Without a bucket a posted key is not a field at all: the form is as it always was.
    r = client.post("/", {"text": "plain", "upload": f"uploads/{alice.pk}/x"})
    assert r.status_code == 302 and Post.objects.get().image == ""

    request.getfixturevalue("s3")
    for page in ("/", "/settings/profile/"):
        html = client.get(page).content.decode()
        assert 'data-direct-upload="/api/uploads/"' in html
        assert '<input type="hidden" name="upload" id="id_upload" value="">' in html


def test_connect_src_has_the_bucket_origin_only_with_a_bucket(client, settings, alice, request, api):
    settings.LOCALIOT_WS_PORT = 18083
    assert directives(client.get("/accounts/login/"))["connect-src"] == ["'self'", "ws://127.0.0.1:18083"]
    request.getfixturevalue("s3")
    r = api.as_(alice).post("/api/uploads/", {"content_type": "image/png"}, format="json")
    url = urlsplit(r.json()["url"])
    origin = f"{url.scheme}://{url.netloc}"
    policy = directives(client.get("/accounts/login/"))
    assert origin == f"https://{BUCKET}.s3.amazonaws.com"
    assert policy["connect-src"] == ["'self'", "ws://127.0.0.1:18083", origin]

    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:9999"  # a custom endpoint (the browser test's moto server)
    settings.STORAGES = {**settings.STORAGES}  # storage built again with it
    url = urlsplit(media.presigned_upload(alice.pk, "image/png")["url"])
    assert f"{url.scheme}://{url.netloc}" == "http://127.0.0.1:9999"
    policy = directives(client.get("/accounts/login/"))
    assert policy["connect-src"] == ["'self'", "ws://127.0.0.1:18083", "http://127.0.0.1:9999"]
    assert "http://127.0.0.1:9999" in policy["img-src"]
