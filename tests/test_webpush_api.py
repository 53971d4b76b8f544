"""The Web Push API: the VAPID key, and subscribing / unsubscribing a browser — validation, SSRF
refusals, ownership, the per-user cap, authentication and throttling."""
import json

import pytest
from django.test import Client

from config.throttles import WriteThrottle
from notifier.models import PendingWebPush, WebPushSubscription

from .webpush import Device, b64url, device, vapid, vapid_pair, web_push  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

URL = "/api/push/subscriptions/"


def subscription(endpoint="https://fcm.googleapis.com/fcm/send/abc123", **keys):
    phone = Device(None, "t")
    body = {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": phone.p256dh, "auth": b64url(phone.auth)}}
    body["keys"].update(keys)
    return body


def post(api, user, body):
    return api.as_(user).post(URL, body, format="json")


def test_config_gives_the_public_key(api, alice, vapid):
    r = api.as_(alice).get("/api/push/config/")
    assert r.status_code == 200 and r.json() == {"vapid_public_key": vapid.public}


def test_web_push_off_without_keys_and_without_debug(settings, api, alice):
    settings.WEB_PUSH_VAPID_PRIVATE_KEY = ""
    settings.DEBUG = False
    assert api.as_(alice).get("/api/push/config/").json() == {"vapid_public_key": None}
    r = post(api, alice, subscription())
    assert r.status_code == 404 and "off" in r.json()["detail"]


def test_debug_makes_a_local_pair_once_and_keeps_it(settings, api, alice, tmp_path):
    settings.WEB_PUSH_VAPID_PRIVATE_KEY = settings.WEB_PUSH_VAPID_PUBLIC_KEY = ""
    settings.DEBUG = True
    settings.WEB_PUSH_KEY_FILE = str(tmp_path / "webpush-vapid.json")
    first = api.as_(alice).get("/api/push/config/").json()["vapid_public_key"]
    stored = json.loads((tmp_path / "webpush-vapid.json").read_text())
    assert first == stored["public_key"] and len(first) == 87
    from notifier.webpush import keys

    keys._cache.clear()  # a restart
    assert api.as_(alice).get("/api/push/config/").json()["vapid_public_key"] == first
    assert keys.public_of(stored["private_key"]) == first


def test_vapid_keys_command_prints_a_usable_pair(capsys):
    from django.core.management import call_command

    from notifier.webpush import keys

    call_command("vapid_keys")
    out = dict(line.split("=", 1) for line in capsys.readouterr().out.split())
    assert keys.public_of(out["WEB_PUSH_VAPID_PRIVATE_KEY"]) == out["WEB_PUSH_VAPID_PUBLIC_KEY"]
    assert len(keys.b64url_decode(out["WEB_PUSH_VAPID_PRIVATE_KEY"])) == 32


def test_subscribe_then_again_is_one_row_then_unsubscribe(api, alice, vapid):
    body = subscription()
    r = post(api, alice, body)
    assert r.status_code == 201 and r.json()["endpoint"] == body["endpoint"]
    fresh = subscription()  # the browser renewed its keys: same endpoint
    r = post(api, alice, fresh)
    assert r.status_code == 200
    row = WebPushSubscription.objects.get()
    assert (row.user_id, row.p256dh) == (alice.pk, fresh["keys"]["p256dh"])
    r = api.as_(alice).delete(URL, {"endpoint": body["endpoint"]}, format="json")
    assert r.status_code == 204 and not WebPushSubscription.objects.exists()
    assert api.as_(alice).delete(URL, {"endpoint": body["endpoint"]}, format="json").status_code == 204


def test_another_users_endpoint_moves_to_them_and_only_the_owner_deletes(api, alice, bob, vapid):
    body = subscription()
    post(api, alice, body)
    assert api.as_(bob).delete(URL, {"endpoint": body["endpoint"]}, format="json").status_code == 204
    assert WebPushSubscription.objects.get().user_id == alice.pk  # bob could not delete alice's
    assert post(api, bob, body).status_code == 200  # the browser is bob's now
    assert WebPushSubscription.objects.get().user_id == bob.pk


def test_a_moved_device_is_owed_nothing_of_the_previous_user(api, alice, bob, carol, device, django_capture_on_commit_callbacks):
    from feed import services

    phone = device()
    phone.subscribe(api, alice)
    post_ = services.create_post(alice, "hello")
    with django_capture_on_commit_callbacks(execute=False):
        services.add_comment(bob, post_.pk, "hi")
    assert PendingWebPush.objects.count() == 1
    phone.subscribe(api, carol)
    assert not PendingWebPush.objects.exists()


def test_several_devices_and_the_cap_drops_the_oldest(settings, api, alice, vapid):
    settings.WEB_PUSH_MAX_SUBSCRIPTIONS = 3
    endpoints = [f"https://updates.push.services.mozilla.com/wpush/v2/{i}" for i in range(5)]
    for endpoint in endpoints:
        assert post(api, alice, subscription(endpoint)).status_code == 201
    assert set(WebPushSubscription.objects.values_list("endpoint", flat=True)) == set(endpoints[2:])


@pytest.mark.parametrize("endpoint", [
    "https://fcm.googleapis.com/fcm/send/x",
    "https://updates.push.services.mozilla.com/wpush/v2/x",
    "https://wns2-par02p.notify.windows.com/w/?token=x",
    "https://web.push.apple.com/QGx",
    "https://api.push.apple.com/3/device/x",
])
def test_known_push_services_are_accepted(api, alice, vapid, endpoint):
    assert post(api, alice, subscription(endpoint)).status_code == 201


@pytest.mark.parametrize("endpoint, reason", [
    ("http://fcm.googleapis.com/fcm/send/x", "https"),
    ("https://evil.example/push", "known push service"),
    ("https://169.254.169.254/latest/meta-data/", "known push service"),
    ("https://127.0.0.1:8000/api/", "port"),
    ("https://localhost/x", "known push service"),
    ("https://fcm.googleapis.com.evil.example/x", "known push service"),
    ("https://evilnotify.windows.com/x", "known push service"),
    ("https://fcm.googleapis.com@evil.example/x", "credentials"),
    ("https://fcm.googleapis.com:8443/x", "port"),
    ("file:///etc/passwd", "https"),
    ("https://fcm.googleapis.com/x y", "spaces"),
    ("https://fcm.googleapis.com\\@evil.example/", "spaces"),
    ("https://fcm.googleapis.com/" + "x" * 2100, "2000 characters"),
    ("not a url", "spaces"),
])
def test_endpoints_that_are_not_push_services_are_refused(api, alice, vapid, endpoint, reason):
    r = post(api, alice, subscription(endpoint))
    assert r.status_code == 400, r.content
    assert "endpoint" in r.json()["errors"] and reason in r.json()["detail"]
    assert not WebPushSubscription.objects.exists()


def test_the_local_push_service_is_allowed_only_where_configured(settings, api, alice, vapid):
    local = "http://127.0.0.1:8084/push/abc"
    assert post(api, alice, subscription(local)).status_code == 400
    settings.WEB_PUSH_EXTRA_ORIGINS = ["http://127.0.0.1:8084"]
    assert post(api, alice, subscription(local)).status_code == 201
    assert post(api, alice, subscription("http://127.0.0.1:8085/push/abc")).status_code == 400


@pytest.mark.parametrize("keys, field, reason", [
    ({"p256dh": "not base64!"}, "p256dh", "base64url"),
    ({"p256dh": b64url(b"\x04" + b"\x01" * 64)}, "p256dh", "curve"),
    ({"p256dh": b64url(b"\x02" + b"\x01" * 32)}, "p256dh", "uncompressed"),
    ({"auth": b64url(b"short")}, "auth", "16 bytes"),
    ({"auth": "@@@"}, "auth", "base64url"),
    ({"auth": ""}, "auth", "blank"),
])
def test_bad_keys_are_clear_400s(api, alice, vapid, keys, field, reason):
    r = post(api, alice, subscription(**keys))
    assert r.status_code == 400, r.content
    assert field in r.json()["errors"]["keys"][0] and reason in r.json()["detail"]


@pytest.mark.parametrize("body", [{}, {"endpoint": "https://fcm.googleapis.com/x"}, {"keys": {}}, [], "x",
                                  {"endpoint": 5, "keys": "x"}])
def test_malformed_bodies_are_400(api, alice, vapid, body):
    r = api.as_(alice).post(URL, body, format="json")
    assert r.status_code == 400 and r.json()["detail"]
    assert api.as_(alice).delete(URL, {}, format="json").status_code == 400


def test_authentication_is_required(vapid):
    client = Client()
    assert client.get("/api/push/config/").status_code in (401, 403)
    r = client.post(URL, subscription(), content_type="application/json")
    assert r.status_code in (401, 403)


def test_session_auth_needs_csrf(api, alice, vapid):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    r = client.post(URL, subscription(), content_type="application/json")
    assert r.status_code == 403 and not WebPushSubscription.objects.exists()


def test_subscribing_is_throttled(api, alice, vapid, monkeypatch):
    monkeypatch.setattr(WriteThrottle, "THROTTLE_RATES", {"write": "3/min"})
    codes = [post(api, alice, subscription(f"https://fcm.googleapis.com/fcm/send/{i}")).status_code
             for i in range(4)]
    assert codes == [201, 201, 201, 429]


def test_openapi_schema_lists_the_push_endpoints(api, alice):
    r = api.as_(alice).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    paths = json.loads(r.content)["paths"]
    assert {"get"} <= set(paths["/api/push/config/"])
    assert {"post", "delete"} <= set(paths["/api/push/subscriptions/"])


def test_delete_takes_the_endpoint_as_a_query_parameter_too(api, alice, vapid):
    from urllib.parse import urlencode

    body = subscription()
    post(api, alice, body)
    r = api.as_(alice).delete(f"{URL}?{urlencode({'endpoint': body['endpoint']})}")
    assert r.status_code == 204 and not WebPushSubscription.objects.exists()


def test_the_admin_lists_subscriptions_and_owed_pushes(client, make_user, vapid, api):
    admin = make_user("root", is_staff=True, is_superuser=True)
    post(api, admin, subscription())
    client.force_login(admin)
    r = client.get("/admin/notifier/webpushsubscription/")
    assert r.status_code == 200 and b"fcm.googleapis.com" in r.content
    sub = WebPushSubscription.objects.get()
    assert client.get(f"/admin/notifier/webpushsubscription/{sub.pk}/change/").status_code == 200
    assert client.get("/admin/notifier/pendingwebpush/?state=failed").status_code == 200
