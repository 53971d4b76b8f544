"""The notification settings page without JavaScript (the matrix of kinds × channels, the digest's
cadence), opening a notification from a device notification (GET /notifications/<id>/open/), and
the service worker script at /sw.js."""
import re

import pytest

from feed import services as feed
from notifier import services as notes
from notifier.models import Kind, Notification, NotificationEvent, NotificationState

pytestmark = pytest.mark.django_db

ALL = ["comment", "reply", "like", "follow", "mention", "new_post"]


def _boxes(html: str) -> dict[str, tuple[bool, bool]]:
    """Each matrix checkbox by id: (checked, disabled)."""
    found = {}
    for tag in re.findall(r"<input type=\"checkbox\"[^>]*>", html):
        found[re.search(r'id="([^"]+)"', tag).group(1)] = (" checked" in tag, " disabled" in tag)
    return found


def _save(client, **fields):
    return client.post("/settings/notifications/", {"email_digest": "daily", **fields})


def test_the_matrix_shows_the_defaults_as_a_table(client, alice):
    client.force_login(alice)
    response = client.get("/settings/notifications/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<caption>Where each kind of notification reaches you</caption>" in html
    for heading in ("In-app", "Web Push", "Email digest"):
        assert f'<th scope="col">{heading}</th>' in html
    rows = re.findall(r'<tr id="kind-([a-z_]+)"', html)
    assert rows == ["comment", "reply", "mention", "like", "follow", "new_post"]
    assert set(rows) == set(Kind.values)  # every kind has its boxes (one not sent is muted)
    assert '<th scope="row">Likes of your posts' in html
    boxes = _boxes(html)
    assert len(boxes) == 18
    # Everything in-app and by push; likes and new posts not by email (the channel's default).
    assert all(boxes[f"inapp-{k}"] == (True, False) and boxes[f"push-{k}"] == (True, False) for k in ALL)
    assert {k for k in ALL if boxes[f"email-{k}"][0]} == {"comment", "reply", "follow", "mention"}
    # Every box has its own label, naming the column and the kind.
    assert '<label class="matrix-cell" for="push-like">' in html
    assert '<span class="sr-only">Web Push: Likes of your posts</span>' in html
    assert re.search(r'<option value="daily" selected>Daily</option>', html)
    assert "You have no email address yet" in html
    assert 'href="/settings/profile/" id="email-settings-link">Add or verify your email address in profile settings</a>' in html
    # The push switch: a button, nothing asked before a click; its script is a file (CSP).
    assert 'id="push-switch" aria-pressed="false"' in html
    assert re.search(r'<script src="/static/notifier/settings\.js[^"]*" defer>', html)
    assert "<script>" not in html


def test_the_matrix_saves_and_reloads(client, alice):
    client.force_login(alice)
    response = _save(client, in_app=["comment", "reply", "mention", "follow", "new_post"],  # likes muted
                     web_push=["comment", "mention"], email=["comment", "like"], email_digest="hourly")
    assert response.status_code == 302 and response["Location"] == "/settings/notifications/"
    prefs = notes.preferences(alice)
    assert prefs["muted_kinds"] == ["like"]
    assert prefs["channels"] == {"web_push": ["comment", "mention"], "email": ["comment"]}  # muting wins
    assert prefs["email_digest"] == "hourly"
    html = client.get("/settings/notifications/").content.decode()
    assert "Notification settings saved." in html
    boxes = _boxes(html)
    assert boxes["inapp-like"] == (False, False)
    # A muted kind's channel boxes are disabled: it reaches you nowhere. Its email choice is kept
    # beside the disabled box (which a form does not send), for when the mute goes.
    assert boxes["push-like"] == (False, True) and boxes["email-like"] == (True, True)
    assert '<input type="hidden" name="email" value="like" data-keeps="email-like">' in html
    assert boxes["push-comment"] == (True, False) and boxes["push-reply"] == (False, False)
    assert boxes["email-reply"] == (False, False)
    assert re.search(r'<option value="hourly" selected>Hourly</option>', html)
    assert '<tr id="kind-like" data-kind="like" class="is-muted">' in html


def test_unmuting_brings_back_the_channel_choice_kept_while_muted(client, alice):
    client.force_login(alice)
    _save(client, in_app=["comment"], web_push=["comment"], email=["comment", "like"])
    assert notes.preferences(alice)["channels"]["email"] == ["comment"]
    # The page as rendered posts the kept choice back (the hidden field), with likes unmuted now.
    _save(client, in_app=["comment", "like"], web_push=["comment"], email=["comment", "like"])
    assert notes.preferences(alice)["channels"]["email"] == ["comment", "like"]
    state = NotificationState.objects.get(pk=alice.pk)
    assert state.muted_kinds == "reply,follow,mention,new_post"


def test_nothing_ticked_mutes_everything(client, alice):
    client.force_login(alice)
    _save(client, email_digest="off")
    prefs = notes.preferences(alice)
    assert prefs["muted_kinds"] == ALL
    assert prefs["channels"] == {"web_push": [], "email": []}
    assert prefs["email_digest"] == "off"


@pytest.mark.parametrize("fields, message", [
    ({"in_app": ["likes"]}, "Unknown kind: likes."),
    ({"web_push": ["comment", "<b>x</b>"]}, "Unknown kind: &lt;b&gt;x&lt;/b&gt;."),
    ({"email_digest": "weekly"}, "The email digest is off, hourly or daily, not weekly."),
    ({"email_digest": ""}, "Choose how often the email digest comes: off, hourly or daily."),
])
def test_a_bad_submission_is_refused_with_400_and_changes_nothing(client, alice, fields, message):
    client.force_login(alice)
    before = notes.preferences(alice)
    response = client.post("/settings/notifications/", {"email_digest": "daily", "in_app": ALL,
                                                        "web_push": ["comment"], **fields})
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and "<b>x</b>" not in html
    assert 'id="settings-error" role="alert"' in html
    assert notes.preferences(alice) == before
    # What was valid in it is shown again, not the stored state.
    if not {"in_app", "web_push"} & fields.keys():
        assert _boxes(html)["push-reply"] == (False, False)


def test_the_form_needs_its_csrf_token(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert _save(client, in_app=[]).status_code == 403
    assert notes.preferences(alice)["muted_kinds"] == []


def test_unmute_a_post_still_works(client, alice, bob):
    client.force_login(alice)
    post = feed.create_post(bob, "noisy")
    notes.mute_post(alice, post.pk)
    response = client.post("/settings/notifications/", {"unmute_post": str(post.pk)})
    assert response.status_code == 302
    assert notes.preferences(alice)["muted_posts"] == []
    assert client.post("/settings/notifications/", {"unmute_post": "x"}).status_code == 400


def test_the_email_address_it_goes_to_is_shown(client, make_user):
    from django.utils import timezone

    dora = make_user("dora", email="dora@example.org")
    accounts = type(dora).objects.filter(pk=dora.pk)
    confirms = hasattr(dora, "email_verified_at")  # accounts that confirm their address by a link
    if confirms:
        accounts.update(email_verified_at=timezone.now())
    client.force_login(dora)
    html = client.get("/settings/notifications/").content.decode()
    assert "goes to <strong>dora@example.org</strong>" in html
    if confirms:
        accounts.update(email_verified_at=None)
        html = client.get("/settings/notifications/").content.decode()
        assert "No digest is sent until you confirm <strong>dora@example.org</strong>" in html


# --- Opening a notification from the device's notification ----------------------------------------

def _commented(alice, bob):
    post = feed.create_post(alice, "a post")
    feed.add_comment(bob, post.pk, "hello")
    return Notification.objects.get(recipient=alice, kind="comment"), post


def test_open_marks_read_and_goes_to_the_item(client, alice, bob):
    item, post = _commented(alice, bob)
    client.force_login(alice)
    assert NotificationState.objects.get(pk=alice.pk).unread_count == 1
    response = client.get(f"/notifications/{item.pk}/open/")
    assert response.status_code == 302
    assert response["Location"] == item.url and item.url.startswith(f"/posts/{post.pk}/")
    assert Notification.objects.for_user(alice).get(pk=item.pk).read
    assert NotificationState.objects.get(pk=alice.pk).unread_count == 0
    # Again: still there, nothing counted twice.
    assert client.get(f"/notifications/{item.pk}/open/").status_code == 302
    assert NotificationState.objects.get(pk=alice.pk).unread_count == 0


def test_open_is_404_for_another_users_notification_and_changes_nothing(client, alice, bob, carol):
    item, _ = _commented(alice, bob)
    client.force_login(carol)
    response = client.get(f"/notifications/{item.pk}/open/")
    assert response.status_code == 404
    assert "Nothing to open" in response.content.decode()
    assert not Notification.objects.for_user(alice).get(pk=item.pk).read
    assert client.get("/notifications/99999999/open/").status_code == 404


def test_open_needs_a_login(client, alice, bob):
    item, _ = _commented(alice, bob)
    response = client.get(f"/notifications/{item.pk}/open/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert not Notification.objects.for_user(alice).get(pk=item.pk).read


def test_open_never_redirects_off_site(client, alice, bob):
    item, _ = _commented(alice, bob)
    NotificationEvent.objects.filter(pk=item.event_id).update(url="https://evil.example/x")
    client.force_login(alice)
    response = client.get(f"/notifications/{item.pk}/open/")
    assert response.status_code == 302 and response["Location"] == "/notifications/"
    NotificationEvent.objects.filter(pk=item.event_id).update(url="//evil.example/x")
    assert client.get(f"/notifications/{item.pk}/open/")["Location"] == "/notifications/"


# --- The service worker script --------------------------------------------------------------------

def test_the_service_worker_is_served_at_the_root(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/javascript; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["Service-Worker-Allowed"] == "/"
    body = response.content.decode()
    # (escapejs writes "-" as \u002D: the same string to JavaScript.)
    assert r'var SITE_ICON = "/static/feed/apple\u002Dtouch\u002Dicon.png";' in body
    for part in ('addEventListener("push"', 'addEventListener("notificationclick"', 'visibilityState === "visible"',
                 '"herald-" + Number(message.id)', "openWindow", "notifications/\" + id + \"/open/"):
        assert part in body, part
    assert "{{" not in body and "{%" not in body


def test_open_shares_the_write_limit(client, alice, bob, monkeypatch):
    from config.throttles import WriteByGetThrottle

    monkeypatch.setattr(WriteByGetThrottle, "THROTTLE_RATES", {"write": "2/min"})
    item, _ = _commented(alice, bob)
    client.force_login(alice)
    assert [client.get(f"/notifications/{item.pk}/open/").status_code for _ in range(3)] == [302, 302, 429]
    response = client.get(f"/notifications/{item.pk}/open/")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
