"""Bad input gets a clear JSON error with the right status under /api/, never a 500 or an HTML page.

Runs on SQLite and on PostgreSQL (CI runs the suite on both): some of these failed on one only.
"""
import base64

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def deep_json(depth: int = 1000) -> str:
    return "[" * depth + "]" * depth


def assert_json_error(response, status):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


@pytest.mark.parametrize("path", ["/api/token/", "/api/users/", "/api/posts/"])
def test_json_nested_too_deep_is_a_400(api, alice, path):
    if path == "/api/posts/":
        api.as_(alice)
    r = api.post(path, deep_json(), content_type="application/json")
    body = assert_json_error(r, 400)
    assert "JSON" in body["detail"]


def cursor_with_position(position: str) -> str:
    return base64.b64encode(f"p={position}".encode()).decode()


@pytest.mark.parametrize("path", ["/api/feed/", "/api/notifications/", "/api/posts/", "/api/posts/{post}/comments/"])
@pytest.mark.parametrize("cursor", [cursor_with_position("abc"), "cD1hYmM=", "not-base64!", "0.0.abc", "0.0.1e999",
                                    "2.0.5", "0.0." + "9" * 30])
def test_a_cursor_whose_position_is_not_a_number_is_a_400(api, alice, path, cursor):
    from feed import services

    post = services.create_post(alice, "hello")
    r = api.as_(alice).get(path.format(post=post.pk), {"cursor": cursor})
    body = assert_json_error(r, 400)
    assert "cursor" in body["detail"].lower()


def test_a_valid_cursor_still_pages(api, alice):
    from feed import services

    for i in range(3):
        services.create_post(alice, f"post {i}")
    first = api.as_(alice).get("/api/posts/", {"page_size": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    second = api.get(first["next"])
    assert second.status_code == 200 and len(second.json()["results"]) == 1


@pytest.mark.parametrize("params", [{"author": "al\x00ice"}, {"cursor": "\x00"}, {"page_size": "1\x00"}])
def test_nul_in_a_query_parameter_is_a_400(api, alice, params):
    r = api.as_(alice).get("/api/posts/", params)
    assert_json_error(r, 400)


def test_nul_in_a_page_query_parameter_is_a_400_page(client, alice):
    client.force_login(alice)
    r = client.get("/", {"q": "a\x00b"})
    assert r.status_code == 400


def test_an_overlong_author_filter_is_no_error(api, alice):
    r = api.as_(alice).get("/api/posts/", {"author": "a" * 60_000})
    assert r.status_code == 200 and r.json()["results"] == []


def test_an_overlong_login_name_is_a_plain_failed_login(api, client, alice):
    r = api.post("/api/token/", {"username": "a" * 60_000, "password": "x"}, format="json")
    assert_json_error(r, 400)
    r = client.post("/accounts/login/", {"username": "a" * 60_000, "password": "x"})
    assert r.status_code == 200 and b"Please enter a correct" in r.content


def test_an_unknown_api_path_answers_json_404_even_with_a_session_and_no_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    r = client.post("/api/no-such-thing/", {"a": 1})
    assert_json_error(r, 404)


def test_a_body_over_the_upload_limit_is_a_json_413(api, alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = api.as_(alice).post("/api/posts/", {"text": "x" * 5000}, format="json")
    body = assert_json_error(r, 413)
    assert "too large" in body["detail"]


def test_a_server_error_under_api_is_json(api, alice, monkeypatch):
    from feed import api as feed_api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(feed_api.HomeFeedView, "get_queryset", broken)
    client = api.as_(alice)
    client.raise_request_exception = False
    r = client.get("/api/feed/")
    body = assert_json_error(r, 500)
    assert "a bug" not in body["detail"]  # nothing internal leaks



@pytest.mark.parametrize("path", ["/api/posts/%0A/", "/api/posts/abc/", "/api/posts/1%0A2/comments/", "/api/%F0%9F%98%80"])
def test_any_unknown_api_path_is_a_json_404(api, alice, path):
    assert_json_error(api.as_(alice).get(path), 404)


@pytest.mark.parametrize("params", [{"page_size": "0"}, {"page_size": "101"}, {"page_size": "x"}, {"page_size": ""},
                                    {"page_size": "612528443518", "after_seq": "5"}])
def test_a_page_size_out_of_bounds_is_a_400_on_every_list(api, alice, params):
    for path in ("/api/notifications/", "/api/posts/", "/api/feed/"):
        body = assert_json_error(api.as_(alice).get(path, params), 400)
        assert "page_size" in body["errors"]


def test_the_api_takes_json_and_says_so_to_a_form(api, alice):
    # (Posts and the avatar also take multipart, for their picture: tests/test_images_api.py.)
    post = api.as_(alice).post("/api/posts/", {"text": "a post"}, format="json").json()
    r = api.as_(alice).post(f"/api/posts/{post['id']}/comments/", {"text": "as a form"}, format="multipart")
    body = assert_json_error(r, 415)
    assert "multipart/form-data" in body["detail"]
    # ... except the token view, which also takes a form (curl -d username=… -d password=…).
    from .conftest import PASSWORD

    assert api.post("/api/token/", {"username": "alice", "password": PASSWORD}, format="multipart").status_code == 415
    r = api.post("/api/token/", f"username=alice&password={PASSWORD}", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200 and r.json()["token"]


@pytest.mark.django_db
def test_api_text_is_counted_as_sent_as_its_schema_says(api, alice):
    """The schema's maxLength (2,000) holds for the text as sent: 2,001 characters are a 400 even
    when white space around them would be stripped to 2,000; 2,000 with it are taken, stripped."""
    api.as_(alice)
    over = "\u0085" + "x" * 2000
    post = api.post("/api/posts/", {"text": "hello"}, format="json").json()
    for method, path in (("post", "/api/posts/"), ("patch", f"/api/posts/{post['id']}/"),
                         ("post", f"/api/posts/{post['id']}/comments/")):
        answer = getattr(api, method)(path, {"text": over}, format="json")
        assert answer.status_code == 400, (method, path)
        assert "too long: 2001 characters" in answer.json()["errors"]["text"][0]
    taken = api.post("/api/posts/", {"text": " " + "x" * 1998 + "\n"}, format="json")
    assert taken.status_code == 201 and taken.json()["text"] == "x" * 1998
