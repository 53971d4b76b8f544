"""Limits on guessing and flooding: failed log-ins (page and API alike), and page forms that share
the API's throttles. Counters live in limits.counters' database store here (rows rolled back with
each test); tests/test_limits_processes.py runs the same limits across four worker processes."""
import pytest
from django.test import Client

from feed.models import Post, User

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURES_PER_USERNAME = 5
    settings.LOGIN_FAILURES_PER_ADDRESS = 8
    settings.LOGIN_FAILURE_WINDOW = 600


def page_login(client, username, password):
    return client.post("/accounts/login/", {"username": username, "password": password})


def api_login(client, username, password):
    return client.post("/api/token/", {"username": username, "password": password}, content_type="application/json")


def test_the_log_in_page_stops_a_guesser_even_with_the_right_password(client, alice, limits):
    for _ in range(5):
        assert page_login(client, "alice", "wrong").status_code == 200  # the form, with its error
    r = page_login(client, "alice", PASSWORD)
    assert r.status_code == 429
    assert 0 < int(r["Retry-After"]) <= 600
    assert b"Too many failed log-ins" in r.content
    assert "_auth_user_id" not in client.session  # not logged in


def test_the_api_and_the_page_share_the_count(client, alice, limits):
    for _ in range(3):
        page_login(client, "alice", "wrong")
    for _ in range(2):
        assert api_login(client, "alice", "wrong").status_code == 400
    r = api_login(client, "ALICE", PASSWORD)  # any case: the same account
    assert r.status_code == 429 and int(r["Retry-After"]) > 0
    assert "Too many failed log-ins" in r.json()["detail"]


def test_one_address_guessing_many_accounts_is_stopped(client, make_user, limits):
    for i in range(8):
        api_login(client, f"someone{i}", "wrong")
    make_user("fresh")
    assert api_login(client, "fresh", PASSWORD).status_code == 429
    other = Client(REMOTE_ADDR="10.9.9.9")  # another address may still log in
    assert api_login(other, "fresh", PASSWORD).status_code == 200


def test_a_success_clears_the_accounts_count_not_the_addresss(client, alice, bob, limits):
    for _ in range(4):
        page_login(client, "alice", "wrong")
    assert api_login(client, "alice", PASSWORD).status_code == 200
    for _ in range(3):
        page_login(client, "alice", "wrong")
    assert api_login(client, "alice", PASSWORD).status_code == 200  # 7 failures for alice, 3 since
    # ... but the address keeps its 7: logging in to one's own account does not buy more guesses.
    page_login(client, "bob", "wrong")
    assert api_login(client, "bob", PASSWORD).status_code == 429


def test_page_sign_ups_share_the_api_limit(client, settings, monkeypatch):
    from config.throttles import SignupThrottle

    monkeypatch.setattr(SignupThrottle, "THROTTLE_RATES", {"signup": "3/hour"})
    api = Client()
    assert api.post("/api/users/", {"username": "api1", "password": "long-enough-pass-1"},
                    content_type="application/json").status_code == 201
    for i in range(2):
        page = Client()
        r = page.post("/accounts/signup/", {"username": f"page{i}", "password1": "long-enough-pass-1",
                                            "password2": "long-enough-pass-1"})
        assert r.status_code == 302, r.content[:500]
    r = Client().post("/accounts/signup/", {"username": "page9", "password1": "long-enough-pass-1",
                                            "password2": "long-enough-pass-1"})
    assert r.status_code == 429 and int(r["Retry-After"]) > 0
    assert b"Try again in" in r.content
    assert not User.objects.filter(username="page9").exists()


def test_page_posts_and_comments_share_the_api_write_limit(client, api, alice, monkeypatch):
    from config.throttles import WriteThrottle

    monkeypatch.setattr(WriteThrottle, "THROTTLE_RATES", {"write": "3/min"})
    client.force_login(alice)
    assert api.as_(alice).post("/api/posts/", {"text": "from the API"}, format="json").status_code == 201
    assert client.post("/", {"text": "from the page"}).status_code == 302
    post = Post.objects.first()
    assert client.post(f"/posts/{post.pk}/", {"text": "a comment"}).status_code == 302
    r = client.post("/", {"text": "one too many"})
    assert r.status_code == 429 and int(r["Retry-After"]) > 0
    assert Post.objects.count() == 2
    assert client.get("/").status_code == 200  # reading is never throttled


def test_a_refused_attempt_does_not_use_up_a_slot(client, alice, limits):
    for _ in range(5):
        page_login(client, "alice", "wrong")
    for _ in range(3):
        assert api_login(client, "alice", "wrong").status_code == 429
    # The address took 5 slots (the refusals gave theirs back): 3 more failures fit in its 8.
    for name in ("x1", "x2", "x3"):
        assert api_login(client, name, "wrong").status_code == 400
    assert api_login(client, "x4", "wrong").status_code == 429


def test_retry_after_counts_down_the_fixed_window(client, alice, limits, monkeypatch):
    import time

    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    for _ in range(5):
        page_login(client, "alice", "wrong")
    clock[0] += 100
    r = api_login(client, "alice", PASSWORD)
    assert r.status_code == 429 and int(r["Retry-After"]) == 501  # 600 s from the first failure
    clock[0] += 500
    assert api_login(client, "alice", PASSWORD).status_code == 200  # the window is over


def test_failed_admin_log_ins_count_too(client, alice, limits):
    for _ in range(5):
        client.post("/admin/login/", {"username": "alice", "password": "wrong"})
    assert api_login(client, "alice", PASSWORD).status_code == 429


def test_throttle_retry_after_is_the_rest_of_the_window(api, alice, monkeypatch):
    from config.throttles import WriteThrottle

    monkeypatch.setattr(WriteThrottle, "THROTTLE_RATES", {"write": "2/hour"})
    api.as_(alice)
    codes = [api.post("/api/posts/", {"text": f"p{i}"}, format="json").status_code for i in range(3)]
    assert codes == [201, 201, 429]
    r = api.post("/api/posts/", {"text": "again"}, format="json")
    assert r.status_code == 429 and 3590 <= int(r["Retry-After"]) <= 3600
