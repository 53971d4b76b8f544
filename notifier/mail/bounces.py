"""Bounces and complaints from Amazon SES, through an SNS topic subscribed to an HTTPS endpoint
(`POST /email/ses-events/`): a hard bounce or a complaint turns email off for that address.

django-ses's SESEventWebhookView does the SNS side (subscription confirmation to an SNS host only,
message types, bounce and complaint parsing) and is reused; what was not sound enough is replaced:
- Signature: django-ses always checks SHA1 (SignatureVersion 1); SNS topics may sign with SHA256
  (SignatureVersion 2). Both are verified here, by the version the message names; anything else
  is refused.
- Certificate: fetched only from `https://sns.<region>.amazonaws.com[.cn]/SimpleNotificationService-<hex>.pem`
  (the exact shape of SNS's signing-certificate URLs; no other host, no redirects), with the
  standard library (django-ses needs `requests`, which the Lambda package does not carry), and a
  failed fetch is not cached as a failure forever.
- Topics: only those in SES_EVENTS_TOPIC_ARNS (a valid signature proves only that *some* AWS
  account's topic sent it); with none configured the endpoint is off (404).
- A body that is not a JSON object of strings is a 400, never a 500.

What happens to an address: its accounts' `email_verified_at` is cleared (no digest, no password
reset goes to it until it is verified again), and a complaint ("this is spam") also turns the
digest off. Soft (transient) bounces change nothing.
"""
import base64
import json
import logging
import re
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import Http404, HttpResponseBadRequest
from django_ses import utils as ses_utils
from django_ses.views import SESEventWebhookView

from ..models import Digest

log = logging.getLogger(__name__)

CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/SimpleNotificationService-[a-f0-9]+\.pem$")
SIGNED_FIELDS = ("Type", "Message", "MessageId", "Timestamp", "TopicArn", "Signature", "SigningCertURL",
                 "SignatureVersion", "Subject", "SubscribeURL", "Token")
_certificates: dict[str, object] = {}
MAX_CERTIFICATES = 16


def trusted_certificate_url(url) -> bool:
    if not isinstance(url, str) or not CERT_URL.match(url):
        return False
    parsed = urlparse(url)
    return parsed.scheme == "https" and not parsed.username and not parsed.port


def fetch_certificate(url: str) -> bytes:
    """The PEM at `url` (already checked to be SNS's); no redirects followed."""
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirects)
    with opener.open(url, timeout=5) as response:
        return response.read(64 * 1024)


class SnsMessageVerifier(ses_utils.EventMessageVerifier):
    @property
    def certificate(self):
        url = self._data.get("SigningCertURL")
        if not trusted_certificate_url(url):
            log.warning("SNS message with an untrusted certificate URL: %r", url)
            return None
        if url not in _certificates:
            from cryptography import x509

            try:
                certificate = x509.load_pem_x509_certificate(fetch_certificate(url))
            except Exception as exc:  # network, HTTP or PEM: this message is not verified; the next tries again
                log.warning("SNS certificate %s not loaded: %s", url, exc)
                return None
            if len(_certificates) >= MAX_CERTIFICATES:
                _certificates.clear()
            _certificates[url] = certificate
        return _certificates[url]

    def is_verified(self) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        algorithm = {"1": hashes.SHA1, "2": hashes.SHA256}.get(self._data.get("SignatureVersion"))
        try:
            signature = base64.b64decode(self._data.get("Signature") or "", validate=True)
        except ValueError:
            return False
        to_sign = self._get_bytes_to_sign()
        if algorithm is None or not signature or not to_sign:
            return False
        certificate = self.certificate
        if certificate is None:
            return False
        try:
            certificate.public_key().verify(signature, to_sign, padding.PKCS1v15(), algorithm())
        except (InvalidSignature, TypeError, ValueError):
            log.warning("SNS message %s: signature does not verify", self._data.get("MessageId"))
            return False
        return True


class SesEventsView(SESEventWebhookView):
    def post(self, request, *args, **kwargs):
        if not settings.SES_EVENTS_TOPIC_ARNS:
            raise Http404("Not configured.")
        try:
            notification = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return HttpResponseBadRequest("The body is not JSON.")
        if not isinstance(notification, dict) or any(
                not isinstance(notification.get(f, ""), str) for f in SIGNED_FIELDS):
            return HttpResponseBadRequest("Not an SNS message.")
        if notification.get("Type") == "Notification":
            try:
                message = json.loads(notification.get("Message", ""))
            except ValueError:
                message = None
            if not isinstance(message, dict):
                return HttpResponseBadRequest("The SNS message does not hold an SES event.")
        # Verified here whatever django-ses's AWS_SES_VERIFY_EVENT_SIGNATURES says.
        if not self.verify_event_message(notification):
            return HttpResponseBadRequest("Signature verification failed.")
        return super().post(request, *args, **kwargs)

    def verify_event_message(self, notification):
        return SnsMessageVerifier(notification).is_verified()

    def verify_event_topic(self, notification):
        return notification.get("TopicArn") in settings.SES_EVENTS_TOPIC_ARNS

    def handle_bounce(self, notification, message):
        bounce = message.get("bounce")
        if isinstance(bounce, dict) and bounce.get("bounceType") == "Permanent":
            turn_off(_addresses(bounce.get("bouncedRecipients")), complaint=False)

    def handle_complaint(self, notification, message):
        complaint = message.get("complaint")
        if isinstance(complaint, dict):
            turn_off(_addresses(complaint.get("complainedRecipients")), complaint=True)

    def handle_received(self, notification, message):  # inbound mail is not Herald's business
        self.handle_unknown_event_type(notification, message)

    def handle_unknown_event_type(self, notification, message):
        log.info("SES event ignored: %s", message.get("eventType", message.get("notificationType")))


def _addresses(recipients) -> list[str]:
    if not isinstance(recipients, list):
        return []
    found = []
    for r in recipients:
        address = r.get("emailAddress") if isinstance(r, dict) else None
        if isinstance(address, str) and "@" in address and len(address) <= 254:
            found.append(address.strip())
    return found


def turn_off(addresses: list[str], *, complaint: bool) -> int:
    """No more mail to these addresses: their accounts' addresses become unverified (and, after a
    complaint, their digest goes off). Returns how many accounts changed."""
    if not addresses:
        return 0
    from ..services import set_preferences

    User = get_user_model()
    changed, accounts = 0, set()
    for address in addresses:
        users = list(User.objects.filter(email__iexact=address).values_list("pk", flat=True))
        accounts.update(users)
        changed += User.objects.filter(pk__in=users, email_verified_at__isnull=False).update(email_verified_at=None)
    if complaint:
        for uid in sorted(accounts):  # the state rows' own lock order (services._lock_states)
            set_preferences(uid, email_digest=Digest.OFF)
    log.info("SES %s: email turned off for %d account(s)", "complaint" if complaint else "bounce", changed)
    return changed
