"""Browsers' Web Push subscriptions: what may be stored, and storing it.

Every stored endpoint is a URL this server will POST to, so it must name a push service, never an
arbitrary host (SSRF): https on one of the known push services' hosts (KNOWN_HOSTS, and hosts
under KNOWN_SUFFIXES), or an origin listed in WEB_PUSH_EXTRA_ORIGINS (the local push service in
the IoT emulator; http is allowed only there). The keys must be usable: `p256dh` a valid
uncompressed P-256 point, `auth` 16 bytes, both base64url.

One row per endpoint: the same endpoint again updates it (new keys), from another user it moves
to that user (the browser's profile is someone else's now) and the pushes owed to the previous
user on it go. At most WEB_PUSH_MAX_SUBSCRIPTIONS per user: the oldest go beyond that.
"""
import hashlib
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import PendingWebPush, WebPushSubscription
from .keys import b64url_decode

KNOWN_HOSTS = frozenset({"fcm.googleapis.com", "updates.push.services.mozilla.com", "web.push.apple.com"})
KNOWN_SUFFIXES = (".notify.windows.com", ".push.apple.com")
MAX_ENDPOINT = 2000
_URL_CHARS = re.compile(r"^[\x21-\x7e]+$")


def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()


def _origin(parts) -> str:
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def endpoint_error(endpoint: str) -> str | None:
    """Why this endpoint may not be stored, or None."""
    if len(endpoint) > MAX_ENDPOINT:
        return f"The endpoint must be at most {MAX_ENDPOINT} characters."
    if not _URL_CHARS.match(endpoint) or "\\" in endpoint:
        return "The endpoint must be a URL without spaces or control characters."
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "The endpoint is not a valid URL."
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "The endpoint must not carry credentials or a fragment."
    host = (parts.hostname or "").rstrip(".")
    if not host or parts.scheme not in ("https", "http"):
        return "The endpoint must be an https URL."
    extra = {o.rstrip("/").lower() for o in settings.WEB_PUSH_EXTRA_ORIGINS}
    if _origin(parts).lower() in extra:
        return None
    if parts.scheme != "https":
        return "The endpoint must be an https URL."
    if parts.port not in (None, 443):
        return "The endpoint must use the push service's standard port."
    if host not in KNOWN_HOSTS and not any(host.endswith(suffix) for suffix in KNOWN_SUFFIXES):
        return "The endpoint is not a known push service."
    return None


def p256dh_error(value: str) -> str | None:
    try:
        raw = b64url_decode(value)
    except ValueError:
        return "p256dh must be base64url."
    if len(raw) != 65 or raw[0] != 4:
        return "p256dh must be an uncompressed P-256 public key (65 bytes)."
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return "p256dh is not a point on the P-256 curve."
    return None


def auth_error(value: str) -> str | None:
    try:
        raw = b64url_decode(value)
    except ValueError:
        return "auth must be base64url."
    if len(raw) != 16:
        return "auth must be 16 bytes."
    return None


def subscribe(user, *, endpoint: str, p256dh: str, auth: str, user_agent: str = "") -> tuple[WebPushSubscription, bool]:
    """Store (or update, or move to `user`) the subscription for `endpoint`; returns it and
    whether it is new. Validated by the caller. Concurrent calls with the same endpoint leave one
    row: it is an upsert on the endpoint's hash. The user's notification state row is locked
    first (the lock every notification write takes first too), so one user's subscribes take
    turns and the cap holds."""
    from ..services import _lock_states

    digest = endpoint_hash(endpoint)
    existed = WebPushSubscription.objects.filter(endpoint_hash=digest).exists()
    with transaction.atomic():
        _lock_states([user.pk])
        WebPushSubscription.objects.bulk_create(
            [WebPushSubscription(user_id=user.pk, endpoint=endpoint, endpoint_hash=digest, p256dh=p256dh,
                                 auth=auth, user_agent=user_agent[:200], created_at=timezone.now())],
            update_conflicts=True, unique_fields=["endpoint_hash"],
            update_fields=["user", "p256dh", "auth", "user_agent", "created_at"],
        )
        sub = WebPushSubscription.objects.get(endpoint_hash=digest)
        # Pushes owed on this device to whoever had it before are not this user's to get.
        PendingWebPush.objects.filter(subscription_id=sub.pk).exclude(notification__recipient_id=user.pk).delete()
        _cap(user.pk)
    return sub, not existed


def _cap(user_id: int) -> None:
    extra = list(WebPushSubscription.objects.filter(user_id=user_id).order_by("-created_at", "-pk")
                 .values_list("pk", flat=True)[settings.WEB_PUSH_MAX_SUBSCRIPTIONS:])
    if extra:
        WebPushSubscription.objects.filter(pk__in=extra).delete()


def unsubscribe(user, endpoint: str) -> bool:
    """Delete the caller's subscription for `endpoint` (and what is owed to it); False when there
    is none of theirs (someone else's stays)."""
    deleted, _ = WebPushSubscription.objects.filter(endpoint_hash=endpoint_hash(endpoint), user_id=user.pk).delete()
    return bool(deleted)


