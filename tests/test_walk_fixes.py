"""Forms count line breaks as the browser does, names of only spaces are stored empty, logging out
says so (and a GET of the log-out URL does not log out), every page starts with a skip link, and
htmx is told not to inject inline styles."""
import re

import pytest
from django.test import Client

from feed.forms import CommentForm, PostForm, ProfileForm, SignupForm
from feed.models import Post, User

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


# --- line breaks and spaces in forms ------------------------------------------------------------

def test_bio_with_crlf_line_breaks_counts_each_as_one_character(client, alice):
    client.force_login(alice)
    bio = "first line\r\n" + "x" * 289  # 300 characters as the browser counts them, 301 as sent
    assert len(bio) == 301 and len(bio.replace("\r\n", "\n")) == 300
    r = client.post("/settings/profile/", {"display_name": "Alice Archer", "bio": bio})
    assert r.status_code == 302, r.content.decode()
    alice.refresh_from_db()
    assert alice.bio == "first line\n" + "x" * 289
    assert alice.display_name == "Alice Archer"


def test_bio_longer_than_300_characters_is_still_refused(alice):
    form = ProfileForm({"display_name": "", "bio": "a\r\n" + "x" * 299}, instance=alice)
    assert not form.is_valid()
    assert "at most 300 characters (it has 301)" in str(form.errors["bio"])


def test_lone_cr_line_breaks_are_normalised_too(alice):
    form = ProfileForm({"display_name": "", "bio": "one\rtwo\r\nthree"}, instance=alice)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["bio"] == "one\ntwo\nthree"


def test_display_name_of_only_spaces_is_stored_empty(client, alice):
    client.force_login(alice)
    r = client.post("/settings/profile/", {"display_name": "   \t ", "bio": "  hi  "})
    assert r.status_code == 302
    alice.refresh_from_db()
    assert alice.display_name == ""
    assert alice.name == "alice"  # the username shows instead
    assert alice.bio == "hi"


def test_signup_display_name_is_stripped():
    form = SignupForm({"username": "dora", "display_name": "  Dora  ", "password1": PASSWORD, "password2": PASSWORD})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["display_name"] == "Dora"


@pytest.mark.parametrize("form_class", [PostForm, CommentForm])
def test_post_and_comment_at_the_limit_with_crlf_line_breaks(form_class):
    text = "line\r\n" * 100 + "x" * 1500  # 2,000 characters with "\n", 2,100 as sent
    form = form_class({"text": text})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["text"] == "line\n" * 100 + "x" * 1500
    assert len(form.cleaned_data["text"]) == 2000


def test_post_page_accepts_crlf_text_at_the_limit(client, alice):
    client.force_login(alice)
    r = client.post("/", {"text": "a\r\n" * 10 + "y" * 1980})
    assert r.status_code == 302
    assert Post.objects.get().text == "a\n" * 10 + "y" * 1980


# --- logging out ----------------------------------------------------------------------------------

def test_log_out_says_so_on_the_log_in_page(client, alice):
    client.force_login(alice)
    r = client.post("/accounts/logout/", follow=True)
    assert r.redirect_chain[-1][0] == "/accounts/login/"
    assert "You have been logged out." in r.content.decode()
    assert "_auth_user_id" not in client.session


def test_get_of_the_log_out_url_shows_a_button_and_does_not_log_out(client, alice):
    client.force_login(alice)
    r = client.get("/accounts/logout/")
    assert r.status_code == 200
    html = r.content.decode()
    form = re.search(r'<form method="post" action="/accounts/logout/" class="logout-form">.*?</form>', html, re.S)
    assert form and 'name="csrfmiddlewaretoken"' in form.group(0) and 'id="logout-confirm"' in form.group(0)
    assert client.session["_auth_user_id"] == str(alice.pk)
    assert client.get("/").context["user"].is_authenticated


def test_get_of_the_log_out_url_when_logged_out_goes_to_log_in(client):
    r = client.get("/accounts/logout/")
    assert r.status_code == 302 and r.url == "/accounts/login/"


def test_log_out_still_needs_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post("/accounts/logout/").status_code == 403
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_log_out_when_not_logged_in_says_nothing(client):
    r = client.post("/accounts/logout/", follow=True)
    assert r.redirect_chain[-1][0] == "/accounts/login/"
    assert "logged out" not in r.content.decode()


# --- every page ------------------------------------------------------------------------------------

FOCUSABLE = re.compile(r"<(a\s[^>]*href|button|input(?![^>]*type=\"hidden\")|select|textarea)\b[^>]*>", re.S)


@pytest.mark.parametrize("path, logged_in", [
    ("/", False), ("/accounts/login/", False), ("/accounts/signup/", False),
    ("/", True), ("/notifications/", True), ("/settings/profile/", True), ("/u/alice/", True),
    ("/accounts/logout/", True),
])
def test_skip_link_is_the_first_focusable_element(client, alice, path, logged_in):
    if logged_in:
        client.force_login(alice)
    html = client.get(path).content.decode()
    body = html[html.index("<body"):]
    first = FOCUSABLE.search(body).group(0)
    assert 'class="skip-link"' in first and 'href="#main"' in first, first
    assert ">Skip to content</a>" in body
    assert re.search(r'<main [^>]*id="main"', body)


def test_htmx_is_configured_not_to_inject_inline_styles(client):
    html = client.get("/").content.decode()
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    assert meta, "no htmx-config meta"
    import json

    config = json.loads(meta.group(1))
    assert config["includeIndicatorStyles"] is False
    assert "style" not in config["attributesToSettle"]
    head = html[: html.index("</head>")]
    assert "{#" not in head and "<style" not in head


def test_the_api_counts_a_crlf_line_break_as_one_character(api, alice):
    body = "a" * 1000 + "\r\n" + "b" * 999  # 2,000 characters as a browser counts them
    r = api.as_(alice).post("/api/posts/", {"text": body}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["text"] == "a" * 1000 + "\n" + "b" * 999
