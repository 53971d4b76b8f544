"""Pictures on S3 (MEDIA_BUCKET, as on Lambda): django-storages with the real boto3 client against
moto's S3. The settings switch, pictures stored and deleted in the bucket, and the way past API
Gateway's payload limit: a presigned POST under the user's own prefix, the browser's upload to it
(a real multipart POST), then the upload's key handed to the API, checked like a direct upload and
deleted, whatever the outcome."""
import base64
import importlib.util
import json
from pathlib import Path

import pytest
import requests
from moto import mock_aws

from feed import media
from feed.models import Post

from .pictures import halves, picture

pytestmark = pytest.mark.django_db

BUCKET, REGION = "herald-media-test", "us-east-1"
ROOT = Path(__file__).resolve().parent.parent


def settings_with(monkeypatch, **env):
    """config/settings.py evaluated afresh with these environment variables."""
    for name, value in {"DEBUG": "1", **env}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("config._settings_probe", ROOT / "config" / "settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def s3(settings, monkeypatch):
    """The default storage is the S3 bucket of MEDIA_BUCKET (as settings.py builds it), in moto."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    probe = settings_with(monkeypatch, MEDIA_BUCKET=BUCKET, AWS_REGION=REGION)
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        settings.STORAGES = {**settings.STORAGES, "default": probe.STORAGES["default"]}
        settings.MEDIA_BUCKET = BUCKET
        yield client


def keys(client, prefix="") -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


def test_the_bucket_setting_switches_storage_and_lets_pages_show_its_pictures(monkeypatch):
    probe = settings_with(monkeypatch, MEDIA_BUCKET=BUCKET, AWS_REGION=REGION)
    default = probe.STORAGES["default"]
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert default["OPTIONS"]["bucket_name"] == BUCKET and default["OPTIONS"]["file_overwrite"] is False
    assert f"https://{BUCKET}.s3.amazonaws.com" in probe.CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"]
    monkeypatch.delenv("MEDIA_BUCKET")
    local = settings_with(monkeypatch)
    assert local.STORAGES["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert local.CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] == ["'self'", "data:"]


def test_avatars_live_in_the_bucket_and_replacing_one_deletes_its_objects(
        s3, api, alice, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    def put(content):
        with django_capture_on_commit_callbacks(execute=True):
            return api.as_(alice).put("/api/users/me/avatar/", {"image": SimpleUploadedFile("a.png", content)},
                                      format="multipart")

    r = put(halves(120, 80))
    assert r.status_code == 200, r.json()
    alice.refresh_from_db()
    first = set(media.avatar_names(alice.avatar))
    assert keys(s3) == first
    head = s3.head_object(Bucket=BUCKET, Key=f"{alice.avatar}-96.webp")
    assert head["ContentType"] == "image/webp"
    url = r.json()["avatar"]["medium"]
    assert url.startswith(f"https://{BUCKET}.s3.amazonaws.com/{alice.avatar}-96.webp?") and "X-Amz-Signature=" in url

    assert put(picture()).status_code == 200
    alice.refresh_from_db()
    assert keys(s3) == set(media.avatar_names(alice.avatar)) and not keys(s3) & first


def presign(api, user, content_type="image/jpeg"):
    r = api.as_(user).post("/api/uploads/", {"content_type": content_type}, format="json")
    assert r.status_code == 201, r.json()
    return r.json()


def send(upload, content, content_type="image/jpeg"):
    """What the browser does with a presigned POST: a multipart form, the file last."""
    return requests.post(upload["url"], data=upload["fields"], files={"file": ("photo", content, content_type)},
                         timeout=10)


def test_presigned_post_is_scoped_to_the_user_the_type_and_the_size(s3, api, alice):
    upload = presign(api, alice)
    assert upload["key"].startswith(f"uploads/{alice.pk}/") and media.upload_key_belongs_to(upload["key"], alice.pk)
    assert upload["fields"]["key"] == upload["key"]
    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    assert {"Content-Type": "image/jpeg"} in policy["conditions"]
    assert ["content-length-range", 1, 10 * 1024 * 1024] in policy["conditions"]
    assert {"key": upload["key"]} in policy["conditions"] and {"bucket": BUCKET} in policy["conditions"]
    from django.utils.dateparse import parse_datetime

    expires = parse_datetime(policy["expiration"].replace("Z", "+00:00"))
    assert 0 <= (expires - parse_datetime(upload["expires_at"])).total_seconds() < 5  # as the answer says
    from django.utils import timezone

    assert 240 < (expires - timezone.now()).total_seconds() <= 300  # five minutes
    assert presign(api, alice)["key"] != upload["key"]  # a new one each time


def test_a_direct_upload_becomes_a_post_picture_and_the_upload_is_deleted(s3, api, alice):
    from .pictures import jpeg_with_gps_and_orientation

    upload = presign(api, alice)
    assert send(upload, jpeg_with_gps_and_orientation(3000, 1000)).status_code in (200, 204)
    assert keys(s3, "uploads/") == {upload["key"]}

    r = api.as_(alice).post("/api/posts/", {"text": "big one", "upload": upload["key"], "image_alt": "sea"},
                            format="json")
    assert r.status_code == 201, r.json()
    post = Post.objects.get()
    assert r.json()["image"]["width"] == 533 and r.json()["image"]["height"] == 1600  # turned, then resized
    assert keys(s3) == {post.image}  # the raw upload is gone, only the re-encoded copy is kept
    body = s3.get_object(Bucket=BUCKET, Key=post.image)["Body"].read()
    assert body[:4] == b"RIFF" and b"GPS" not in body and b"Exif" not in body

    # The same key again: it was used up.
    r = api.as_(alice).put("/api/users/me/avatar/", {"upload": upload["key"]}, format="json")
    assert r.status_code == 400 and "used already" in r.json()["errors"]["upload"][0]


def test_a_direct_upload_that_is_not_a_picture_is_refused_and_deleted(s3, api, alice, bob):
    upload = presign(api, alice, "image/png")
    assert send(upload, b"<html>not a picture</html>", "image/png").status_code in (200, 204)
    r = api.as_(bob).put("/api/users/me/avatar/", {"upload": upload["key"]}, format="json")
    assert r.status_code == 400 and r.json()["errors"]["upload"] == ["That is not one of your uploads."]
    assert keys(s3) == {upload["key"]}  # someone else's key changes nothing

    r = api.as_(alice).put("/api/users/me/avatar/", {"upload": upload["key"]}, format="json")
    assert r.status_code == 400 and "not an image" in r.json()["errors"]["upload"][0]
    assert keys(s3) == set()  # refused: nothing kept, not even the upload
    alice.refresh_from_db()
    assert alice.avatar == ""


def test_an_oversized_object_is_refused_without_being_read(s3, api, alice, monkeypatch):
    key = f"uploads/{alice.pk}/big"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"\0" * 2048)
    from feed import images

    monkeypatch.setattr(images, "MAX_BYTES", 1024)  # as if the policy's size limit had not held
    r = api.as_(alice).put("/api/users/me/avatar/", {"upload": key}, format="json")
    assert r.status_code == 400 and "larger than" in r.json()["errors"]["upload"][0]
    assert keys(s3) == set()


def test_an_upload_key_is_taken_once_even_by_requests_at_the_same_moment(s3, api, alice):
    """Two requests with one key at once (a double submit): the second comes while the first still
    reads the object, before it is deleted; it is refused and leaves the object to the first."""
    upload = presign(api, alice)
    assert send(upload, picture(80, 60)).status_code in (200, 204)
    with media.take_upload(upload["key"]) as first:
        with pytest.raises(media.images.ImageRejected, match="used already"):
            with media.take_upload(upload["key"]):
                pass
        assert keys(s3, "uploads/") == {upload["key"]}  # still there for the one that took it
        assert first.read()[:4] == b"\x89PNG"
    assert keys(s3, "uploads/") == set()
    # Through the API: the key is spent.
    r = api.as_(alice).post("/api/posts/", {"text": "again", "upload": upload["key"]}, format="json")
    assert r.status_code == 400 and "used already" in r.json()["errors"]["upload"][0]
