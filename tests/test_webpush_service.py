"""The emulator's local Web Push service checks what a real one checks: the VAPID JWT (ES256
signature verified with k, aud = the endpoint's origin, exp in the future and at most 24 h ahead,
a sub), TTL and Content-Encoding; and Herald's sender passes those checks."""
import json
import time

import pytest
import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import sign

from notifier.webpush import sender
from notifier.webpush.vapid import Signer, origin

from .webpush import b64url, device, vapid, vapid_pair, web_push  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

http = urllib3.PoolManager()


def key_pair():
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return key, b64url(public)


def push(endpoint, *, claims=None, key=None, k=None, authorization=None, headers=None, body=b"x" * 100):
    if authorization is None:
        signing_key, public = key or key_pair()
        claims = {"aud": origin(endpoint), "exp": int(time.time()) + 3600, "sub": "mailto:ops@herald.example",
                  **(claims or {})}
        claims = {name: value for name, value in claims.items() if value is not None}
        authorization = f"vapid t={sign(claims, signing_key)}, k={k or public}"
    sent = {"TTL": "60", "Content-Encoding": "aes128gcm", "Authorization": authorization, **(headers or {})}
    sent = {name: value for name, value in sent.items() if value is not None}
    return http.request("POST", endpoint, body=body, headers=sent)


def reason(response) -> str:
    return json.loads(response.data)["reason"]


def test_a_valid_push_is_stored_with_201_and_a_location(web_push, device):
    phone = device()
    r = push(phone.endpoint, headers={"Urgency": "high", "Topic": "n1"})
    assert r.status == 201 and r.headers["Location"].startswith(f"/push/{phone.token}/messages/")
    [message] = phone.raw_messages
    assert message["body"] == b"x" * 100 and message["headers"]["Urgency"] == "high"
    listed = json.loads(http.request("GET", f"{phone.endpoint}/messages").data)["messages"]
    assert len(listed) == 1 and listed[0]["headers"]["TTL"] == "60"


@pytest.mark.parametrize("claims, why", [
    ({"aud": "https://fcm.googleapis.com"}, "aud"),
    ({"aud": None}, "aud"),
    ({"exp": int(time.time()) - 10}, "expired"),
    ({"exp": int(time.time()) + 25 * 3600}, "24 hours"),
    ({"exp": None}, "exp"),
    ({"sub": None}, "sub"),
    ({"sub": "ops@herald.example"}, "sub"),
])
def test_bad_claims_are_refused_401(web_push, device, claims, why):
    phone = device()
    r = push(phone.endpoint, claims=claims)
    assert r.status == 401 and why in reason(r)
    assert phone.raw_messages == []


def test_a_signature_by_another_key_is_refused(web_push, device):
    phone = device()
    signing, _ = key_pair()
    _, other_public = key_pair()
    r = push(phone.endpoint, key=(signing, other_public))
    assert r.status == 401 and "signature" in reason(r)


def test_a_tampered_token_is_refused(web_push, device):
    phone = device()
    signing, public = key_pair()
    claims = {"aud": origin(phone.endpoint), "exp": int(time.time()) + 60, "sub": "mailto:a@b.example"}
    header, _, signature = sign(claims, signing).split(".")
    forged = b64url(json.dumps({**claims, "sub": "mailto:evil@b.example"}).encode())
    r = push(phone.endpoint, authorization=f"vapid t={header}.{forged}.{signature}, k={public}")
    assert r.status == 401 and "signature" in reason(r)


def test_not_es256_is_refused(web_push, device):
    phone = device()
    _, public = key_pair()
    token = ".".join([b64url(b'{"typ":"JWT","alg":"none"}'), b64url(b'{"aud":"x"}'), ""])
    r = push(phone.endpoint, authorization=f"vapid t={token}, k={public}")
    assert r.status == 401 and "ES256" in reason(r)


@pytest.mark.parametrize("authorization, why", [
    ("", "vapid"), ("Bearer abc", "vapid"), ("vapid t=abc", "k"), ("vapid k=abc", "t"), ("vapid t=a.b.c, k=!!", "malformed"),
])
def test_missing_or_malformed_authorization_is_refused(web_push, device, authorization, why):
    phone = device()
    r = push(phone.endpoint, authorization=authorization)
    assert r.status == 401 and why in reason(r)


def test_a_subscription_is_bound_to_its_first_key(web_push, device):
    phone = device()
    assert push(phone.endpoint).status == 201
    r = push(phone.endpoint)  # another application server's key
    assert r.status == 403


@pytest.mark.parametrize("headers, status, why", [
    ({"TTL": None}, 400, "TTL"),
    ({"TTL": "soon"}, 400, "TTL"),
    ({"Content-Encoding": "aesgcm"}, 400, "aes128gcm"),
    ({"Urgency": "urgent"}, 400, "Urgency"),
])
def test_headers_are_required(web_push, device, headers, status, why):
    phone = device()
    r = push(phone.endpoint, headers=headers)
    assert r.status == status and why in reason(r)


def test_over_4096_bytes_is_413(web_push, device):
    phone = device()
    assert push(phone.endpoint, body=b"x" * 4097).status == 413
    assert push(phone.endpoint, body=b"x" * 4096).status == 201


def test_modes_answer_as_asked(web_push, device):
    phone = device()
    r = http.request("POST", f"{phone.endpoint}/mode", body=json.dumps({"status": 429, "retry_after": "7", "times": 1}))
    assert r.status == 200
    r = push(phone.endpoint)
    assert r.status == 429 and r.headers["Retry-After"] == "7"
    assert push(phone.endpoint).status == 201  # back to normal
    minted = json.loads(http.request("POST", f"{web_push.http_url}/push/").data)["endpoint"]
    assert minted.startswith(f"{web_push.http_url}/push/") and push(minted).status == 201


def test_herald_sender_passes_the_checks_and_the_signer_caches(web_push, device, vapid):
    phone = device()
    result = sender.send(phone.endpoint, phone.p256dh, b64url(phone.auth), b'{"hello":1}', ttl=60, urgency="low",
                         topic="n1", timeout=5)
    assert result.outcome == "delivered" and result.status == 201
    assert phone.messages() == [{"hello": 1}]
    auth = phone.raw_messages[0]["headers"]["Authorization"]
    assert auth.startswith("vapid t=") and f", k={vapid.public}" in auth


def test_signer_renews_near_expiry():
    from notifier.webpush.keys import generate

    now = [1_000_000.0]
    signer = Signer(generate().private, "mailto:a@b.example", clock=lambda: now[0])
    first = signer.header("https://fcm.googleapis.com/fcm/send/a")
    assert signer.header("https://fcm.googleapis.com/fcm/send/b") == first
    assert signer.header("https://updates.push.services.mozilla.com/x") != first
    now[0] += 11 * 3600 + 1  # within an hour of the 12 h expiry
    assert signer.header("https://fcm.googleapis.com/fcm/send/a") != first
    assert signer.signed == 3


def test_retry_after_forms():
    from datetime import datetime, timezone

    assert sender.parse_retry_after("120") == 120
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert sender.parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60
    assert sender.parse_retry_after("soon") is None and sender.parse_retry_after(None) is None
    assert sender.classify(500, None).outcome == "retry" and sender.classify(404, None).outcome == "gone"
    assert sender.classify(400, None).outcome == "failed" and sender.classify(202, None).outcome == "delivered"


def test_nothing_heavy_is_imported_by_the_web_path():
    """Storing a notification and the API import no crypto, http_ece, py_vapid or urllib3."""
    import subprocess
    import sys

    code = ("import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings_test'); "
            "django.setup(); import config.urls, notifier.services, notifier.push_api, notifier.webpush.delivery; "
            "heavy = [m for m in ('cryptography', 'http_ece', 'py_vapid', 'urllib3') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "http_ece" not in out and "py_vapid" not in out and "cryptography" not in out, out
