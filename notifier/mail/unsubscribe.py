"""The digest's unsubscribe link: a signed token naming the user and its purpose, no expiry.

One URL for both ways in (RFC 8058): a mail client's one-click `List-Unsubscribe-Post` POST, and
the visible link in the mail, whose GET shows a page with a button (mail scanners prefetch links:
a GET must not unsubscribe). The POST turns the digest off (`email_digest = "off"`; the kinds a
user chose for email stay as they were, for when they turn it on again). No log-in (the token is
the proof), no CSRF (mail clients post without cookies; the token is a secret only its mailbox
holds), and no rate limit: mail providers post many users' unsubscribes from a few addresses, and
a forged token costs a failed HMAC check.
"""
from django.core import signing
from django.urls import reverse

SALT = "herald.email.unsubscribe"


def token(user_id: int) -> str:
    return signing.dumps({"u": user_id, "p": "digest"}, salt=SALT)


def user_id_of(value: str) -> int | None:
    """The user a token was made for, or None for a forged or garbled one."""
    try:
        data = signing.loads(value, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("p") != "digest" or not isinstance(data.get("u"), int):
        return None
    return data["u"]


def url(user_id: int) -> str:
    from django.conf import settings

    return settings.SITE_URL + reverse("email-unsubscribe", args=[token(user_id)])
