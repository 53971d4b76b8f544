"""Web Push (RFC 8030 push, RFC 8291 payload encryption, RFC 8292 VAPID): a notification reaches a
device's browser with no Herald tab open.

The pieces, by role:
  keys          the VAPID key pair: from settings, or (DEBUG) generated once beside the database
  subscriptions validating and storing browsers' PushSubscriptions (one per endpoint, capped per user)
  payload       the message a device gets (the contract the service worker reads), TTL and urgency
  vapid         the signed VAPID JWT, cached per push service origin
  sender        encrypting (http_ece, aes128gcm) and POSTing to the push service (urllib3 pool)
  delivery      owed rows (PendingWebPush): claiming, sending, recording outcomes, the sweep

Nothing here imports cryptography, http_ece, py_vapid or urllib3 at module level except sender and
vapid, which only the sending path (after a commit, a task, deliver_pending) imports: a web
request that stores a notification pays for none of it. This module stays import-light: services
ask it whether Web Push is on.
"""
from django.conf import settings


def enabled() -> bool:
    """Whether Web Push is on: VAPID keys are configured, or DEBUG (a local pair is made on first
    use). Cheap: no key is loaded."""
    return bool(settings.WEB_PUSH_VAPID_PRIVATE_KEY) or settings.DEBUG


def public_key() -> str | None:
    """The VAPID public key browsers subscribe with (base64url uncompressed P-256 point), or None
    when Web Push is off."""
    from .keys import current

    keys = current()
    return keys.public if keys else None
