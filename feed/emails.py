"""A person's email address: proving it is theirs, and the account mails that need a proven one.

Verification is a signed link (django.core.signing, its own salt) that names the account and a
digest of the exact address it was sent to, and expires after EMAIL_VERIFY_MAX_AGE (3 days). It
needs no log-in: whoever opens it proved they read that mailbox. A link for an address the account
no longer has does nothing, so changing the address (which clears the proof: feed.models.User.save)
makes every older link useless.

Mails go from background tasks (notifier.taskqueue): the request only writes the task, in its own
transaction, and the task reads the account again before sending, so a mail never goes to an
address that changed meanwhile, and a slow mail server never holds a page.

Password reset ("forgot password") is Django's own views and token generator; the form here sends
only to verified addresses of active accounts, answers the same whatever was typed, and counts
mails per address (PASSWORD_RESET_PER_ADDRESS_PER_HOUR) on top of the per-client throttle.
"""
import hashlib
import logging
import math
import unicodedata

from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from config import login_guard
from limits import counters
from notifier.taskqueue import background, enqueue

from .models import User

log = logging.getLogger(__name__)

VERIFY_SALT = "herald.email.verify"


class BadLink(Exception):
    """A verification link that cannot verify anything; the message says why, for the page."""


def _same_address(a: str, b: str) -> bool:
    """Equal once Unicode-normalised and case-folded (what Django's own reset form compares, so a
    look-alike address that only the database's case-insensitive match finds gets no mail)."""
    return unicodedata.normalize("NFKC", a).casefold() == unicodedata.normalize("NFKC", b).casefold()


def _address_tag(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()[:24]


def verification_token(user) -> str:
    return signing.dumps({"u": user.pk, "a": _address_tag(user.email)}, salt=VERIFY_SALT)


def verify(token: str) -> User:
    """Mark the account's current address verified; raises BadLink for a forged, expired or
    outdated link. Idempotent: a second click verifies nothing new and says the same."""
    try:
        data = signing.loads(token, salt=VERIFY_SALT, max_age=settings.EMAIL_VERIFY_MAX_AGE)
    except signing.SignatureExpired:
        raise BadLink("This link has expired. Log in and ask for a new one on your profile settings.") from None
    except signing.BadSignature:
        raise BadLink("This link is not valid. Copy the whole link from the email, or ask for a new one.") from None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int) or not isinstance(data.get("a"), str):
        raise BadLink("This link is not valid.")
    user = User.objects.filter(pk=data["u"], is_active=True).first()
    if user is None or not user.email or _address_tag(user.email) != data["a"]:
        raise BadLink("This link was for an address that is no longer on the account.")
    # Only while the address is still the one the link was for (a change in between wins).
    User.objects.filter(pk=user.pk, email=user.email, email_verified_at__isnull=True).update(
        email_verified_at=timezone.now())
    user.refresh_from_db(fields=["email", "email_verified_at"])
    return user


def send_verification(user) -> int:
    """Send a verification link to the account's address (after the current transaction commits);
    returns 0, or the seconds to wait when the account has had its EMAIL_VERIFY_PER_HOUR already."""
    if not user.email:
        return 0
    taken = counters.hit(f"email-verify:{user.pk}", 3600)
    if taken.count > settings.EMAIL_VERIFY_PER_HOUR:
        return max(1, math.ceil(taken.wait()))
    enqueue(send_verification_mail, user.pk, user.email)
    return 0


def _absolute(path: str) -> str:
    return settings.SITE_URL + path


def _send(subject: str, template: str, context: dict, to: str, **headers) -> None:
    context = {"site_name": settings.SITE_NAME, "site_url": settings.SITE_URL, **context}
    message = EmailMultiAlternatives(
        subject=subject, body=render_to_string(f"{template}.txt", context), to=[to], headers=headers or None)
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    message.send()


@background
def send_verification_mail(user_id: int, address: str) -> bool:
    """The verification mail, if `address` is still the account's and still unproven."""
    user = User.objects.filter(pk=user_id, is_active=True, email=address).first()
    if user is None or user.email_verified_at:
        return False
    url = _absolute(reverse("email-verify", args=[verification_token(user)]))
    _send(f"Confirm your email address for {settings.SITE_NAME}", "feed/email/verify",
          {"user": user, "url": url, "days": settings.EMAIL_VERIFY_MAX_AGE // 86400}, user.email)
    return True


def tell_old_address(old_address: str, was_verified: bool, user) -> None:
    """The account's address changed: tell the address it had, if that one was confirmed (an
    unconfirmed one may not be theirs), so a change they did not make does not go unnoticed."""
    if was_verified and old_address and not _same_address(old_address, user.email):
        enqueue(send_address_changed_mail, user.pk, old_address, user.email)


@background
def send_address_changed_mail(user_id: int, old_address: str, new_address: str) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    _send(f"Your {settings.SITE_NAME} email address was changed", "feed/email/address_changed",
          {"user": user, "new_address": new_address, "url": _absolute(reverse("password-change"))}, old_address)
    return True


@background
def send_password_reset_mail(user_id: int, address: str) -> bool:
    """A password reset link (Django's token: it stops working once the password changes or the
    user logs in, and after PASSWORD_RESET_TIMEOUT), to a still verified address."""
    user = User.objects.filter(pk=user_id, is_active=True, email=address, email_verified_at__isnull=False).first()
    if user is None or not user.has_usable_password():
        return False
    path = reverse("password-reset-confirm", kwargs={
        "uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user)})
    _send(f"Reset your {settings.SITE_NAME} password", "registration/password_reset_email",
          {"user": user, "url": _absolute(path), "minutes": settings.PASSWORD_RESET_TIMEOUT // 60}, user.email)
    return True


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's form, sending only to verified addresses (from a background task, so the answer
    takes the same time and says the same whether or not the address is known)."""

    def get_users(self, email):
        candidates = User.objects.filter(email__iexact=email, is_active=True, email_verified_at__isnull=False)
        return [u for u in candidates if u.has_usable_password() and _same_address(email, u.email)]

    def save(self, *args, **kwargs):
        email = self.cleaned_data["email"]
        taken = counters.hit(f"password-reset-to:{_address_tag(email.lower())}", 3600)
        if taken.count > settings.PASSWORD_RESET_PER_ADDRESS_PER_HOUR:
            log.info("password reset mail not sent: %s per hour to one address", settings.PASSWORD_RESET_PER_ADDRESS_PER_HOUR)
            return
        for user in self.get_users(email):
            enqueue(send_password_reset_mail, user.pk, user.email)


PASSWORD_FOR_EMAIL = "Enter your current password to change your email address."
WRONG_PASSWORD = "That is not your current password."
TOO_MANY = "Too many wrong passwords for this account. Try again in {wait} seconds."


def change_refused(request, user, new_email: str, password: str) -> tuple[str | None, int]:
    """Why `user` may not change their address to `new_email` with `password` (None if they may),
    and the seconds to wait when the account has had too many wrong passwords.

    The address is where password resets go once it is confirmed: whoever holds a session (a
    shared computer, a stolen cookie or token) could otherwise put their own address there,
    confirm it and take the account. So a change, to another address or to none, takes the
    account's password, as a password change does. Each check counts as a log-in attempt of the
    account (config.login_guard), so a stolen token cannot guess the password here either."""
    if new_email == user.email:
        return None, 0
    if not password:
        return PASSWORD_FOR_EMAIL, 0
    wait = login_guard.begin(request, user.get_username())
    if wait:
        return TOO_MANY.format(wait=wait), wait
    if not user.check_password(password):
        return WRONG_PASSWORD, 0
    login_guard.succeeded(request, user.get_username())
    return None, 0
