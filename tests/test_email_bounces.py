"""SES bounces and complaints through SNS: signed messages verified against a certificate from an
SNS host only (a locally made key and certificate, served for an allowed SNS URL by a stand-in
for the fetch), the topic checked, and the address turned off."""
import base64
import datetime
import json

import pytest
from django.test import Client
from django.utils import timezone

from feed.models import User
from notifier.mail import bounces
from notifier.models import NotificationState

TOPIC = "arn:aws:sns:us-east-1:123456789012:herald-dev-ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"


@pytest.fixture(scope="module")
def signer():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(autouse=True)
def sns(settings, monkeypatch, signer):
    settings.SES_EVENTS_TOPIC_ARNS = [TOPIC]
    bounces._certificates.clear()
    fetched = []

    def fetch(url):
        fetched.append(url)
        assert url == CERT_URL
        return signer[1]

    monkeypatch.setattr(bounces, "fetch_certificate", fetch)
    return fetched


def signed(signer, message: dict, *, kind="Notification", version="1", topic=TOPIC, cert_url=CERT_URL, **extra) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    body = {"Type": kind, "MessageId": "b1c2", "TopicArn": topic, "Message": json.dumps(message),
            "Timestamp": "2026-12-06T18:00:00.000Z", "SignatureVersion": version, "SigningCertURL": cert_url, **extra}
    fields = (["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] if kind == "Notification" else
              ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])
    to_sign = "".join(f"{f}\n{body[f]}\n" for f in fields if body.get(f)).encode()
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    body["Signature"] = base64.b64encode(signer[0].sign(to_sign, padding.PKCS1v15(), algorithm)).decode()
    return body


def bounce(address, kind="Permanent"):
    return {"notificationType": "Bounce", "bounce": {"bounceType": kind, "bouncedRecipients": [{"emailAddress": address}]},
            "mail": {"messageId": "m1"}}


def complaint(address):
    return {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": address}]},
            "mail": {"messageId": "m2"}}


def post(body) -> int:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return Client(enforce_csrf_checks=True).post("/email/ses-events/", data, content_type="text/plain").status_code


@pytest.fixture
def verified(alice):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com", email_verified_at=timezone.now())
    return alice


def is_verified(user) -> bool:
    return User.objects.get(pk=user.pk).email_verified_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("version", ["1", "2"])
def test_a_hard_bounce_turns_the_address_off(verified, signer, sns, version):
    assert post(signed(signer, bounce("Alice@Example.com"), version=version)) == 200
    assert not is_verified(verified)
    assert sns == [CERT_URL]
    assert NotificationState.of(verified).email_digest == "daily"  # a bounce is not a complaint


@pytest.mark.django_db
def test_a_soft_bounce_changes_nothing(verified, signer):
    assert post(signed(signer, bounce("alice@example.com", kind="Transient"))) == 200
    assert is_verified(verified)


@pytest.mark.django_db
def test_a_complaint_turns_the_address_and_the_digest_off(verified, signer):
    assert post(signed(signer, complaint("alice@example.com"))) == 200
    assert not is_verified(verified)
    assert NotificationState.of(verified).email_digest == "off"


@pytest.mark.django_db
def test_a_bad_signature_is_refused(verified, signer):
    body = signed(signer, bounce("alice@example.com"))
    body["Message"] = json.dumps(bounce("someone@example.com"))  # changed after signing
    assert post(body) == 400
    body = signed(signer, bounce("alice@example.com"), version="3")
    assert post(body) == 400
    body = signed(signer, bounce("alice@example.com"))
    body["Signature"] = "!!not base64!!"
    assert post(body) == 400
    assert is_verified(verified)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "https://evil.example/SimpleNotificationService-0123.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0123.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123.pem",
    "https://sns.us-east-1.amazonaws.com/other.pem",
    "https://s3.amazonaws.com/SimpleNotificationService-0123.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0123.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-0123.pem",
])
def test_a_certificate_from_anywhere_but_sns_is_never_fetched(verified, signer, sns, url):
    assert post(signed(signer, bounce("alice@example.com"), cert_url=url)) == 400
    assert sns == [] and is_verified(verified)


@pytest.mark.django_db
def test_another_topic_is_refused(verified, signer):
    assert post(signed(signer, complaint("alice@example.com"), topic=TOPIC + "-other")) == 400
    assert is_verified(verified)


@pytest.mark.django_db
def test_the_endpoint_is_off_without_a_topic(verified, signer, settings):
    settings.SES_EVENTS_TOPIC_ARNS = []
    assert post(signed(signer, bounce("alice@example.com"))) == 404
    assert is_verified(verified)


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"\xff\xfe", "not json", "[]", "null", json.dumps({"Type": ["Notification"]}),
                                  json.dumps({"Type": "Notification", "Message": "not json"})])
def test_garbage_is_a_400(body):
    assert post(body) == 400


@pytest.mark.django_db
def test_get_is_not_allowed():
    assert Client().get("/email/ses-events/").status_code == 405


@pytest.mark.django_db
def test_a_subscription_is_confirmed_only_at_an_sns_host(signer, monkeypatch):
    from django_ses import utils

    opened = []
    monkeypatch.setattr(utils, "urlopen", lambda url: opened.append(url) or type("R", (), {"read": lambda self: b""})())
    good = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=t"
    assert post(signed(signer, {}, kind="SubscriptionConfirmation", SubscribeURL=good, Token="t")) == 200
    assert opened == [good]
    evil = "https://evil.example/?Action=ConfirmSubscription"
    assert post(signed(signer, {}, kind="SubscriptionConfirmation", SubscribeURL=evil, Token="t")) == 200
    assert opened == [good]
