"""Web Push for tests: VAPID keys, the emulator's local push service, and a browser's side of a
subscription (its own P-256 key pair and auth secret), which decrypts what the service received."""
import base64
import json
import os
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifier.webpush import keys as vapid_keys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@pytest.fixture(scope="session")
def vapid_pair():
    return vapid_keys.generate()


@pytest.fixture
def vapid(settings, vapid_pair):
    """Web Push on, with this session's key pair."""
    settings.WEB_PUSH_VAPID_PRIVATE_KEY = vapid_pair.private
    settings.WEB_PUSH_VAPID_PUBLIC_KEY = vapid_pair.public
    settings.WEB_PUSH_SUBJECT = "mailto:ops@herald.example"
    return vapid_pair


@pytest.fixture
def web_push(settings, vapid, emulator):
    """Web Push on, endpoints on the emulator's local push service allowed; yields the emulator."""
    settings.WEB_PUSH_EXTRA_ORIGINS = [emulator.push_origin]
    emulator.push_service.clear()
    yield emulator
    emulator.push_service.clear()


@dataclass
class Device:
    """A browser's subscription: the endpoint on the local push service and the keys it made."""

    iot: object
    token: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def endpoint(self) -> str:
        return self.iot.push_endpoint(self.token)

    @property
    def p256dh(self) -> str:
        return b64url(self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                         serialization.PublicFormat.UncompressedPoint))

    def subscription(self) -> dict:
        """What PushSubscription.toJSON() gives."""
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)}}

    def subscribe(self, api, user):
        r = api.as_(user).post("/api/push/subscriptions/", self.subscription(), format="json")
        assert r.status_code in (200, 201), r.content
        return r

    @property
    def raw_messages(self) -> list[dict]:
        return self.iot.push_service.messages(self.token)

    def messages(self) -> list[dict]:
        """Every message received, decrypted with this browser's private key."""
        import http_ece

        return [json.loads(http_ece.decrypt(m["body"], private_key=self.key, auth_secret=self.auth,
                                            version="aes128gcm")) for m in self.raw_messages]

    def mode(self, status, **kwargs):
        self.iot.push_service.set_mode(self.token, status, **kwargs)


@pytest.fixture
def device(web_push):
    """make a new browser subscription on the local push service: device()"""
    return lambda: Device(web_push, web_push.push_service.new_token())
