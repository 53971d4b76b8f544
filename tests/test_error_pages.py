"""Error pages: branded, with a way home, on every page path; JSON with the API's `{"detail"}`
shape under /api/. (DEBUG is off in tests, as in production, so these are what users see.)"""
import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import include, path

from feed import services

pytestmark = pytest.mark.django_db


def boom(request):
    raise RuntimeError("a bug")


def forbidden(request):
    raise PermissionDenied


urlpatterns = [
    path("boom/", boom),
    path("api/boom/", boom),
    path("forbidden/", forbidden),
    path("api/forbidden/", forbidden),
    path("", include("config.urls")),
]
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"


def assert_branded(response, status, heading):
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert f"<h1>{heading}</h1>" in html
    assert 'href="/"' in html  # a way home


def test_a_missing_page_is_branded_with_a_way_home(client, alice):
    assert_branded(client.get("/no/such/page/"), 404, "Page not found")
    client.force_login(alice)
    r = client.get("/no/such/page/")
    assert_branded(r, 404, "Page not found")
    assert 'id="bell-count"' in r.content.decode()  # the site's own chrome, signed in


def test_a_deleted_post_is_a_branded_404(client, alice):
    post = services.create_post(alice, "soon gone")
    services.delete_post(alice, post.pk)
    client.force_login(alice)
    assert_branded(client.get(f"/posts/{post.pk}/"), 404, "Page not found")


def test_an_unknown_api_path_answers_json(client):
    r = client.get("/api/no-such-thing/")
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}


def test_forbidden_and_server_errors(settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    assert_branded(client.get("/forbidden/"), 403, "Not allowed")
    assert client.get("/api/forbidden/").json() == {"detail": "You do not have permission to perform this action."}
    r = client.get("/boom/")
    assert_branded(r, 500, "Something went wrong")
    assert "a bug" not in r.content.decode()  # nothing internal shown
    r = client.get("/api/boom/")
    assert r.status_code == 500 and "detail" in r.json()
