"""Email addresses on accounts: sign-up and profile, verification by a signed link, forgot
password (Django's views, verified addresses only, the same answer either way), and their limits."""
import re

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from feed import emails
from feed.models import User

from .conftest import PASSWORD

LINK = re.compile(r"https?://[^\s\"<>]+")


def link_in(message, part: str) -> str:
    [url] = {u for u in LINK.findall(message.body) if part in u}
    return url.replace("http://127.0.0.1:8000", "")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- sign-up ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_signup_page_takes_an_optional_address_and_mails_a_link(on_commit):
    client = Client()
    with on_commit():
        response = client.post("/accounts/signup/", {
            "username": "dana", "display_name": "Dana", "email": "Dana@Example.COM",
            "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    dana = User.objects.get(username="dana")
    assert dana.email == "Dana@example.com" and dana.email_verified_at is None
    [sent] = mail.outbox
    assert sent.to == ["Dana@example.com"] and "Confirm" in sent.subject
    html = [c for c, kind in sent.alternatives if kind == "text/html"][0]
    url = link_in(sent, "/accounts/email/verify/")
    assert url in html
    page = Client().get(url)  # no log-in needed
    assert page.status_code == 200 and b"is confirmed" in page.content
    dana.refresh_from_db()
    assert dana.email_verified


@pytest.mark.django_db
def test_signup_without_an_address_sends_nothing(on_commit):
    with on_commit():
        Client().post("/accounts/signup/", {"username": "eve", "password1": PASSWORD, "password2": PASSWORD})
    assert User.objects.get(username="eve").email == ""
    assert mail.outbox == []


@pytest.mark.django_db
def test_signup_page_refuses_a_bad_address():
    response = Client().post("/accounts/signup/", {"username": "eve", "email": "not an address",
                                                   "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 200 and b"valid email address" in response.content
    assert not User.objects.filter(username="eve").exists()


@pytest.mark.django_db
def test_api_signup_takes_an_address(api, on_commit):
    with on_commit():
        response = api.post("/api/users/", {"username": "fay", "password": PASSWORD, "email": "fay@example.com"},
                            format="json")
    assert response.status_code == 201, response.content
    assert "email" not in response.json()
    assert User.objects.get(username="fay").email == "fay@example.com"
    assert mail.outbox[0].to == ["fay@example.com"]
    bad = api.post("/api/users/", {"username": "gus", "password": PASSWORD, "email": "gus@"}, format="json")
    assert bad.status_code == 400 and "email" in bad.json()["errors"]


# --- verification ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_changed_address_makes_the_old_link_useless(alice, on_commit):
    User.objects.filter(pk=alice.pk).update(email="old@example.com")
    alice.refresh_from_db()
    old_link = f"/accounts/email/verify/{emails.verification_token(alice)}/"
    client = logged_in(alice)
    with on_commit():
        response = client.post("/settings/profile/", {"display_name": "Alice", "bio": "", "email": "new@example.com",
                                                      "current_password": PASSWORD})
    assert response.status_code == 302
    assert mail.outbox[-1].to == ["new@example.com"]
    refused = Client().get(old_link)
    assert refused.status_code == 400 and b"no longer on the account" in refused.content
    alice.refresh_from_db()
    assert alice.email == "new@example.com" and alice.email_verified_at is None
    assert Client().get(link_in(mail.outbox[-1], "/accounts/email/verify/")).status_code == 200
    alice.refresh_from_db()
    assert alice.email_verified


@pytest.mark.django_db
def test_changing_a_verified_address_clears_the_proof_and_stale_copies_do_not_undo_it(alice):
    User.objects.filter(pk=alice.pk).update(email="a@example.com", email_verified_at=timezone.now())
    fresh = User.objects.get(pk=alice.pk)
    fresh.email = "b@example.com"
    fresh.save()
    assert User.objects.get(pk=alice.pk).email_verified_at is None
    User.objects.filter(pk=alice.pk).update(email="b@example.com", email_verified_at=timezone.now())
    other = User.objects.get(pk=alice.pk)
    loaded_before = User.objects.get(pk=alice.pk)
    User.objects.filter(pk=alice.pk).update(email_verified_at=None)  # a bounce meanwhile
    loaded_before.bio = "x"
    loaded_before.save()
    assert User.objects.get(pk=alice.pk).email_verified_at is None  # the bounce stands
    assert other.email_verified
    loaded_before = User.objects.get(pk=alice.pk)
    User.objects.filter(pk=alice.pk).update(email_verified_at=timezone.now())  # the link opened meanwhile
    loaded_before.bio = "y"
    loaded_before.save()
    assert User.objects.get(pk=alice.pk).email_verified_at is not None  # the proof stands


@pytest.mark.django_db
@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "xx", lambda t: "nonsense", lambda t: t.replace(":", "", 1)])
def test_a_tampered_link_verifies_nothing(alice, mangle):
    User.objects.filter(pk=alice.pk).update(email="a@example.com")
    alice.refresh_from_db()
    response = Client().get(f"/accounts/email/verify/{mangle(emails.verification_token(alice))}/")
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.email_verified_at is None


@pytest.mark.django_db
def test_an_expired_link_verifies_nothing(alice, settings):
    User.objects.filter(pk=alice.pk).update(email="a@example.com")
    alice.refresh_from_db()
    token = emails.verification_token(alice)
    settings.EMAIL_VERIFY_MAX_AGE = -1
    response = Client().get(f"/accounts/email/verify/{token}/")
    assert response.status_code == 400 and b"expired" in response.content


@pytest.mark.django_db
def test_profile_page_shows_the_state_and_resend_is_throttled(alice, on_commit, settings):
    settings.EMAIL_VERIFY_PER_HOUR = 3
    User.objects.filter(pk=alice.pk).update(email="a@example.com")
    client = logged_in(alice)
    page = client.get("/settings/profile/")
    assert b"is not confirmed yet" in page.content and b"email-verify-resend" in page.content
    for _ in range(3):
        with on_commit():
            assert client.post("/settings/email/resend/").status_code == 302
    assert len(mail.outbox) == 3
    refused = client.post("/settings/email/resend/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert len(mail.outbox) == 3
    assert Client().get(link_in(mail.outbox[0], "/accounts/email/verify/")).status_code == 200
    page = client.get("/settings/profile/")
    assert b"is confirmed" in page.content and b"email-verify-resend" not in page.content


@pytest.mark.django_db
def test_resend_needs_a_log_in_and_a_post(alice):
    assert Client().post("/settings/email/resend/").status_code == 302  # to the log-in page
    assert logged_in(alice).get("/settings/email/resend/").status_code == 405


# --- forgot password ------------------------------------------------------------------------


@pytest.fixture
def addresses(alice, bob):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com", email_verified_at=timezone.now())
    User.objects.filter(pk=bob.pk).update(email="bob@example.com")  # not verified


def reset(client, address, on_commit):
    with on_commit():
        return client.post("/accounts/password/reset/", {"email": address}, follow=True)


@pytest.mark.django_db
def test_login_page_links_to_forgot_password():
    page = Client().get("/accounts/login/")
    assert b'href="/accounts/password/reset/"' in page.content


@pytest.mark.django_db
def test_forgot_password_answers_the_same_and_mails_only_a_verified_address(addresses, on_commit):
    answers = {}
    for address in ("alice@example.com", "bob@example.com", "nobody@example.com"):
        response = reset(Client(), address, on_commit)
        answers[address] = (response.status_code, response.redirect_chain,
                            re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", response.content))
    assert answers["alice@example.com"] == answers["bob@example.com"] == answers["nobody@example.com"]
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]


@pytest.mark.django_db
def test_the_reset_link_sets_a_new_password(alice, addresses, on_commit):
    reset(Client(), "ALICE@example.com", on_commit)
    url = link_in(mail.outbox[0], "/accounts/reset/")
    client = Client()
    form = client.get(url, follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "a-brand-new-secret-9",
                                                    "new_password2": "a-brand-new-secret-9"}, follow=True)
    assert done.status_code == 200 and b"Password set" in done.content
    alice.refresh_from_db()
    assert alice.check_password("a-brand-new-secret-9")
    assert Client().get(url, follow=True).content.count(b"not valid any more") == 1  # used once


@pytest.mark.django_db
def test_no_reset_mail_for_an_inactive_account(alice, addresses, on_commit):
    User.objects.filter(pk=alice.pk).update(is_active=False)
    reset(Client(), "alice@example.com", on_commit)
    assert mail.outbox == []


@pytest.mark.django_db
def test_forgot_password_is_throttled_per_client_and_per_address(addresses, on_commit, settings, monkeypatch):
    settings.PASSWORD_RESET_PER_ADDRESS_PER_HOUR = 2
    for i in range(4):  # from four different clients: the address gets two mails
        with on_commit():
            Client(REMOTE_ADDR=f"10.0.0.{i}").post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert len(mail.outbox) == 2
    from config.throttles import PasswordResetThrottle

    monkeypatch.setattr(PasswordResetThrottle, "THROTTLE_RATES", {"password_reset": "3/hour"})
    client = Client(REMOTE_ADDR="10.9.9.9")
    codes = [client.post("/accounts/password/reset/", {"email": f"x{i}@example.com"}).status_code for i in range(4)]
    assert codes == [302, 302, 302, 429]


def test_the_web_path_does_not_import_the_mail_libraries():
    """django-ses (and boto3's SES client), cryptography (SNS signatures) and aiosmtpd load only
    where they are used: serving pages, sign-up and the unsubscribe page import none of them."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, config.wsgi\n"
        "from django.test import Client\n"
        "c = Client()\n"
        "assert c.get('/accounts/signup/').status_code == 200\n"
        "assert c.get('/accounts/password/reset/').status_code == 200\n"
        "assert c.get('/email/unsubscribe/nonsense/').status_code == 404\n"
        "print(sorted(m for m in ('django_ses', 'cryptography', 'aiosmtpd') if m in sys.modules))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "ALLOWED_HOSTS": "testserver",
           "DATABASE_URL": "sqlite:///:memory:"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.django_db
def test_no_digest_until_the_link_is_opened(bob, on_commit):
    from feed import services
    from notifier.mail import digests

    with on_commit():
        Client().post("/accounts/signup/", {"username": "hal", "email": "hal@example.com",
                                            "password1": PASSWORD, "password2": PASSWORD})
    link = link_in(mail.outbox[0], "/accounts/email/verify/")
    services.follow(bob, "hal")
    with on_commit():
        digests.plan("daily")
    assert len(mail.outbox) == 1  # the verification mail only
    Client().get(link)
    with on_commit():
        digests.plan("daily")
    assert [m.to for m in mail.outbox][1:] == [["hal@example.com"]]
    assert "Bob started following you." in mail.outbox[1].body


# --- the API ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_reads_and_changes_the_address(api, alice, on_commit):
    client = api.as_(alice)
    assert client.get("/api/users/me/email/").json() == {"email": "", "verified": False}
    with on_commit():
        changed = client.put("/api/users/me/email/", {"email": "alice@EXAMPLE.com", "current_password": PASSWORD},
                             format="json")
    assert changed.status_code == 200 and changed.json() == {"email": "alice@example.com", "verified": False}
    url = link_in(mail.outbox[0], "/accounts/email/verify/")
    assert Client().get(url).status_code == 200
    assert client.get("/api/users/me/email/").json() == {"email": "alice@example.com", "verified": True}
    with on_commit():
        client.put("/api/users/me/email/", {"email": "alice@example.com"}, format="json")  # the same: nothing
    assert len(mail.outbox) == 1 and client.get("/api/users/me/email/").json()["verified"] is True
    assert client.post("/api/users/me/email/verify/").status_code == 409  # nothing to confirm
    bad = client.put("/api/users/me/email/", {"email": "nope"}, format="json")
    assert bad.status_code == 400 and "email" in bad.json()["errors"]
    removed = client.put("/api/users/me/email/", {"email": "", "current_password": PASSWORD}, format="json")
    assert removed.json() == {"email": "", "verified": False}


@pytest.mark.django_db
@pytest.mark.parametrize("password, message", [(None, "Enter your current password"), ("", "Enter your current password"),
                                               ("not-it-at-all", "not your current password")])
def test_changing_the_address_takes_the_password(api, alice, password, message):
    """Whoever holds a session or token must not be able to put their own address on the account
    (password resets go there once it is confirmed): a change, or a removal, takes the password,
    on the API and on the profile page; nothing changes and no mail goes without it."""
    User.objects.filter(pk=alice.pk).update(email="alice@example.com", email_verified_at=timezone.now())
    body = {"email": "thief@example.com", **({} if password is None else {"current_password": password})}
    refused = api.as_(alice).put("/api/users/me/email/", body, format="json")
    assert refused.status_code == 400
    assert message in refused.json()["errors"]["current_password"][0]
    assert api.put("/api/users/me/email/", {**body, "email": ""}, format="json").status_code == 400
    page = logged_in(alice).post("/settings/profile/", {"display_name": "Alice", "bio": "", **body})
    assert page.status_code == 200 and message in page.content.decode()
    alice.refresh_from_db()
    assert (alice.email, alice.email_verified) == ("alice@example.com", True) and mail.outbox == []
    # The same address, or the rest of the profile, needs no password.
    assert api.put("/api/users/me/email/", {"email": "alice@example.com"}, format="json").status_code == 200
    saved = logged_in(alice).post("/settings/profile/", {"display_name": "Alice A.", "bio": "hi", "email": "alice@example.com"})
    assert saved.status_code == 302 and User.objects.get(pk=alice.pk).display_name == "Alice A."


@pytest.mark.django_db
def test_wrong_passwords_for_an_address_change_count_as_failed_log_ins(api, alice, settings):
    """A stolen token must not be able to guess the password through the address change: each
    check takes a log-in slot of the account (config.login_guard), shared with the log-in page,
    and past the limit even the right password is refused (429) until the window ends."""
    settings.LOGIN_FAILURES_PER_USERNAME = 2
    client = api.as_(alice)
    for _ in range(2):
        wrong = client.put("/api/users/me/email/", {"email": "x@example.com", "current_password": "guess-guess"},
                           format="json")
        assert wrong.status_code == 400
    right = client.put("/api/users/me/email/", {"email": "x@example.com", "current_password": PASSWORD}, format="json")
    assert right.status_code == 429 and int(right["Retry-After"]) > 0
    page = logged_in(alice).post("/settings/profile/", {"display_name": "Alice", "bio": "", "email": "x@example.com",
                                                        "current_password": PASSWORD})
    assert page.status_code == 200 and "Too many wrong passwords" in page.content.decode()
    assert Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 429
    assert User.objects.get(pk=alice.pk).email == ""


@pytest.mark.django_db
def test_a_right_password_gives_back_the_slot_it_took(api, alice, settings):
    settings.LOGIN_FAILURES_PER_USERNAME = 1
    client = api.as_(alice)
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        ok = client.put("/api/users/me/email/", {"email": address, "current_password": PASSWORD}, format="json")
        assert ok.status_code == 200, ok.content


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["page", "api"])
def test_a_confirmed_address_is_told_when_it_is_replaced_or_removed(api, alice, on_commit, how):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com", email_verified_at=timezone.now(),
                                            display_name="<b>Al</b>")

    def change(address):
        with on_commit():
            if how == "api":
                r = api.as_(alice).put("/api/users/me/email/", {"email": address, "current_password": PASSWORD},
                                       format="json")
                assert r.status_code == 200, r.content
            else:
                r = logged_in(alice).post("/settings/profile/", {"display_name": "<b>Al</b>", "bio": "", "email": address,
                                                                 "current_password": PASSWORD})
                assert r.status_code == 302, r.content

    change("new@example.com")
    told = [m for m in mail.outbox if m.to == ["alice@example.com"]]
    assert len(told) == 1 and "changed to new@example.com" in told[0].body and "/settings/password/" in told[0].body
    html = told[0].alternatives[0][0]
    assert "Hello &lt;b&gt;Al&lt;/b&gt;," in html and "<b>Al" not in html
    # new@ was never confirmed: replacing it tells nobody (it may not even be hers).
    mail.outbox.clear()
    change("")
    assert mail.outbox == []
    User.objects.filter(pk=alice.pk).update(email="alice@example.com", email_verified_at=timezone.now())
    change("")
    [removed] = mail.outbox
    assert removed.to == ["alice@example.com"] and "was removed" in removed.body


@pytest.mark.django_db
def test_api_resend_is_limited(api, alice, on_commit, settings):
    settings.EMAIL_VERIFY_PER_HOUR = 2
    User.objects.filter(pk=alice.pk).update(email="a@example.com")
    client = api.as_(alice)
    for _ in range(2):
        with on_commit():
            assert client.post("/api/users/me/email/verify/").status_code == 202
    refused = client.post("/api/users/me/email/verify/")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert len(mail.outbox) == 2
    assert Client().get("/api/users/me/email/").status_code in (401, 403)
