"""Avatars and post pictures through the API and the pages: stored in three sizes / once, shown
everywhere a person or a post is, refused with a 400 naming the field and nothing left on disk,
and their files deleted after the change (or the deletion) commits."""
import pytest

from feed import media, services
from feed.models import Post, User

from .pictures import halves, jpeg_with_gps_and_orientation, picture, png_claiming, upload

pytestmark = pytest.mark.django_db


def stored(root) -> set[str]:
    """Every file under MEDIA_ROOT, as storage names."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def avatar_put(api, user, content, name="me.png"):
    return api.as_(user).put("/api/users/me/avatar/", {"image": upload(content, name)}, format="multipart")


def test_avatar_put_replace_and_delete(api, alice, media_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = avatar_put(api, alice, halves(300, 200))
    assert r.status_code == 200, r.json()
    first = r.json()["avatar"]
    assert set(first) == {"small", "medium", "large"}
    alice.refresh_from_db()
    assert stored(media_root) == set(media.avatar_names(alice.avatar))
    assert all(name.startswith(f"avatars/{alice.pk}/") and name.endswith(".webp") for name in stored(media_root))
    assert first["large"] == f"/media/{alice.avatar}-256.webp"
    assert api.get("/api/users/alice/").json()["avatar"] == first

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = avatar_put(api, alice, picture(80, 80, fmt="JPEG"), "new.jpg")
    assert r.status_code == 200 and r.json()["avatar"] != first
    assert len(callbacks) == 1  # the old files went after the commit, not before
    alice.refresh_from_db()
    assert stored(media_root) == set(media.avatar_names(alice.avatar))  # the old three are gone

    with django_capture_on_commit_callbacks(execute=True):
        r = api.as_(alice).delete("/api/users/me/avatar/")
    assert r.status_code == 204
    assert stored(media_root) == set()
    assert api.get("/api/users/alice/").json()["avatar"] is None


@pytest.mark.parametrize("content,message", [
    (b"not a picture", "not an image"),
    (picture(300, 300, fmt="JPEG")[:500], "damaged"),
    (png_claiming(100_000, 100_000), "too large"),
    (png_claiming(8_000, 6_000), "40 megapixels"),
])
def test_refused_pictures_are_a_400_naming_the_field_and_leave_nothing(api, alice, media_root, content, message):
    r = avatar_put(api, alice, content)
    assert r.status_code == 400, r.content
    assert message in r.json()["errors"]["image"][0]
    r = api.as_(alice).post("/api/posts/", {"text": "look", "image": upload(content), "image_alt": "x"},
                            format="multipart")
    assert r.status_code == 400, r.content
    assert message in r.json()["errors"]["image"][0]
    assert stored(media_root) == set()
    assert not Post.objects.exists()
    alice.refresh_from_db()
    assert alice.avatar == ""


def test_over_ten_megabytes_is_a_400(api, alice, media_root):
    r = avatar_put(api, alice, b"\x89PNG" + b"\0" * (10 * 1024 * 1024))
    assert r.status_code == 400 and "larger than 10 MB" in r.json()["errors"]["image"][0]
    assert stored(media_root) == set()


def test_avatar_input_errors(api, alice):
    assert api.as_(alice).put("/api/users/me/avatar/", {}, format="multipart").json()["errors"] == {
        "image": ["Choose a picture to upload."]}
    r = api.as_(alice).put("/api/users/me/avatar/", {"upload": "uploads/999999/abc"}, format="json")
    assert r.status_code == 400 and r.json()["errors"]["upload"] == ["That is not one of your uploads."]
    r = api.as_(alice).post("/api/uploads/", {"content_type": "image/png"}, format="json")
    assert r.status_code == 409 and "S3" in r.json()["detail"]  # filesystem storage: send the file itself
    r = api.as_(alice).post("/api/uploads/", {"content_type": "text/html"}, format="json")
    assert r.status_code == 400 and "content_type" in r.json()["errors"]


def test_post_with_a_picture(api, alice, bob, media_root, django_capture_on_commit_callbacks):
    r = api.as_(alice).post("/api/posts/", {
        "text": "from the beach", "image": upload(jpeg_with_gps_and_orientation(2400, 1200), "beach.jpg", "image/jpeg"),
        "image_alt": "  Waves <b>at</b> dusk  ",
    }, format="multipart")
    assert r.status_code == 201, r.json()
    image = r.json()["image"]
    name = Post.objects.get().image
    assert image == {"url": f"/media/{name}", "width": 800, "height": 1600, "alt": "Waves <b>at</b> dusk"}
    assert stored(media_root) == {name}
    assert api.as_(alice).get("/api/feed/").json()["results"][0]["image"] == image
    assert api.as_(alice).post("/api/posts/", {"text": "no picture"}, format="json").json()["image"] is None

    r = api.as_(alice).post("/api/posts/", {"text": "alt alone", "image_alt": "nothing"}, format="multipart")
    assert r.status_code == 400 and "image_alt" in r.json()["errors"]
    r = api.as_(alice).post("/api/posts/", {"text": " ", "image": upload(picture())}, format="multipart")
    assert r.status_code == 400 and "text" in r.json()["errors"]
    assert stored(media_root) == {name}

    post_id = r = Post.objects.get(image=name).pk
    assert api.as_(bob).delete(f"/api/posts/{post_id}/").status_code == 403
    assert stored(media_root) == {name}
    with django_capture_on_commit_callbacks(execute=True):
        assert api.as_(alice).delete(f"/api/posts/{post_id}/").status_code == 204
    assert stored(media_root) == set()


def test_a_post_that_fails_after_its_picture_was_stored_leaves_no_file(alice, media_root, monkeypatch):
    def fails(*args, **kwargs):
        raise User.DoesNotExist("gone meanwhile")

    monkeypatch.setattr(services, "_publish", fails)
    with pytest.raises(User.DoesNotExist):
        services.create_post(alice, "hello", image=upload(picture()))
    assert stored(media_root) == set()


def test_deleting_an_account_deletes_its_pictures(alice, bob, media_root, django_capture_on_commit_callbacks):
    services.set_avatar(alice, upload(picture()))
    services.create_post(alice, "mine", image=upload(picture()))
    services.set_avatar(bob, upload(picture()))
    bobs = stored(media_root) - {n for n in stored(media_root) if f"/{alice.pk}/" in n}
    assert len(stored(media_root)) == 7 and len(bobs) == 3
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_account(alice)
    assert stored(media_root) == bobs


def test_a_stale_copy_of_the_user_never_writes_its_old_avatar_back(alice, media_root):
    stale = User.objects.get(pk=alice.pk)
    services.set_avatar(alice, upload(picture()))
    stale.bio = "saved by a form that loaded the user before"
    stale.save()
    fresh = User.objects.get(pk=alice.pk)
    assert (fresh.avatar, fresh.bio) == (alice.avatar, stale.bio)


def test_actors_carry_their_avatar_in_the_api_and_the_push(api, alice, bob, memory_publisher, on_commit):
    services.set_avatar(bob, upload(picture()))
    with on_commit():
        services.follow(bob, "alice")
    urls = bob.avatar_urls
    item = api.as_(alice).get("/api/notifications/").json()["results"][0]
    assert item["actor"] == {"username": "bob", "display_name": "Bob", "avatar": urls}
    assert item["actors"] == [item["actor"]]
    pushed = memory_publisher.messages(type="notification")[-1]
    assert pushed["actor"]["avatar"] == urls and pushed["actors"][0]["avatar"] == urls
    assert api.as_(alice).get("/api/users/", {"q": "bo"}).json()["results"][0]["avatar"] == urls


def test_pages_show_avatars_and_pictures_escaped(client, alice, bob, media_root):
    services.set_avatar(bob, upload(picture()))
    services.follow(alice, "bob")
    post = services.create_post(bob, "look", image=upload(picture(400, 300)), image_alt='"><script>x()</script>')
    services.follow(bob, "alice")
    client.force_login(alice)
    small, medium = bob.avatar_urls["small"], bob.avatar_urls["medium"]
    home = client.get("/").content.decode()
    assert f'<img class="avatar small" src="{small}" srcset="{medium} 2x" width="28" height="28"' in home
    picture_tag = (f'<img src="/media/{post.image}" width="400" height="300" '
                   'alt="&quot;&gt;&lt;script&gt;x()&lt;/script&gt;" loading="lazy">')
    assert picture_tag in home
    assert picture_tag in client.get(f"/posts/{post.pk}/").content.decode()
    assert f'src="{medium}"' in client.get("/u/bob/").content.decode()  # the profile's big one
    assert f'src="{small}"' in client.get("/u/alice/followers/").content.decode()
    assert f'src="{small}"' in client.get("/notifications/").content.decode()
    # Alice has none: her initial, as before.
    assert '<span class="avatar" aria-hidden="true">A</span>' in client.get("/u/alice/").content.decode()

    served = client.get(f"/media/{post.image}")
    assert served.status_code == 200 and served["Content-Type"] == "image/webp"
    assert served["Content-Security-Policy"] == "default-src 'none'; sandbox"  # never a page, whatever it holds
    assert served["Cache-Control"] == "public, max-age=31536000, immutable"  # names are never reused
    assert b"".join(served.streaming_content)[:4] == b"RIFF"
    assert client.get("/media/../config/settings.py").status_code == 404
    assert client.get("/media/uploads/1/x").status_code == 404


def test_edit_profile_and_composer_forms(client, alice, media_root, django_capture_on_commit_callbacks):
    client.force_login(alice)
    r = client.post("/settings/profile/", {"display_name": "Al", "bio": "", "avatar_image": upload(b"nope", "x.png")})
    assert r.status_code == 200
    assert "not an image Herald accepts" in r.content.decode()
    alice.refresh_from_db()
    assert (alice.display_name, alice.avatar) == ("Alice", "")  # nothing saved
    assert 'enctype="multipart/form-data"' in r.content.decode()

    r = client.post("/settings/profile/", {"display_name": "Al", "bio": "", "avatar_image": upload(picture())})
    assert r.status_code == 302
    alice.refresh_from_db()
    assert alice.display_name == "Al" and stored(media_root) == set(media.avatar_names(alice.avatar))
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/settings/profile/", {"display_name": "Al", "bio": "", "remove_avatar": "on"})
    alice.refresh_from_db()
    assert alice.avatar == "" and stored(media_root) == set()

    r = client.post("/", {"text": "hi", "image": upload(b"GIF8", "x.gif")}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and 'id="id_image-error"' in r.content.decode()
    assert not Post.objects.exists() and stored(media_root) == set()
    r = client.post("/", {"text": "hi", "image": upload(picture()), "image_alt": "a red square"})
    assert r.status_code == 302
    assert Post.objects.get().image_alt == "a red square"
