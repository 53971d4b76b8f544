"""Encrypting a payload for one subscription and POSTing it to its push service (RFC 8030 §5).

- Encryption: http_ece's aes128gcm with a fresh ephemeral P-256 key and salt per message, to the
  subscription's `p256dh` key and `auth` secret (RFC 8291). Never a home-made routine.
- Transport: one urllib3 PoolManager per process, keep-alive connections per push service origin
  (WEB_PUSH_CONCURRENCY of them), no automatic retries: a push that fails is recorded and retried
  by the owed row's backoff, honouring the service's Retry-After.
- Headers: TTL and Urgency per kind (payload.POLICY), `Topic: n<notification id>` so a push
  service that still holds an older version of a bumped group replaces it, the VAPID
  Authorization (vapid.Signer, cached per origin).

Outcomes (Result.outcome): "delivered" (200, 201, 202), "gone" (404, 410: the subscription ended),
"retry" (429, 5xx, a network error or timeout; `retry_after` seconds when the service said), or
"failed" (413, any other 4xx: sending it again would fail the same way).
"""
import email.utils
import functools
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from django.conf import settings

from . import keys as vapid_keys
from .vapid import Signer

DELIVERED = {200, 201, 202}
GONE = {404, 410}


@dataclass(frozen=True)
class Result:
    outcome: str  # delivered | gone | retry | failed
    status: int | None = None
    error: str = ""
    retry_after: float | None = None


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec

    return http_ece.encrypt(
        payload, salt=os.urandom(16), private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=vapid_keys.b64url_decode(p256dh), auth_secret=vapid_keys.b64url_decode(auth), version="aes128gcm",
    )


_pool_lock = threading.Lock()
_pools: dict[int, object] = {}


def pool():
    """The process's urllib3 PoolManager (created on first use; one per concurrency setting)."""
    size = settings.WEB_PUSH_CONCURRENCY
    manager = _pools.get(size)
    if manager is None:
        with _pool_lock:
            manager = _pools.get(size)
            if manager is None:
                import urllib3

                manager = urllib3.PoolManager(num_pools=32, maxsize=size, block=False, retries=False)
                _pools[size] = manager
    return manager


@functools.lru_cache(maxsize=8)
def _signer(private_key: str, subject: str) -> Signer:
    return Signer(private_key, subject)


def signer() -> Signer:
    pair = vapid_keys.current()
    if pair is None:
        raise RuntimeError("Web Push is off: no VAPID keys")
    return _signer(pair.private, settings.WEB_PUSH_SUBJECT)


def send(endpoint: str, p256dh: str, auth: str, payload: bytes, *, ttl: int, urgency: str, topic: str | None,
         timeout: float) -> Result:
    """Encrypt and POST one message within `timeout` seconds (half to connect, half to read);
    never raises for what the network or the service does."""
    import urllib3

    try:
        body = encrypt(payload, p256dh, auth)
    except Exception as exc:  # noqa: BLE001 - keys that passed validation but cannot be used
        return Result("failed", error=f"encryption failed: {exc}"[:300])
    headers = {
        "TTL": str(ttl),
        "Urgency": urgency,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Authorization": signer().header(endpoint),
    }
    if topic:
        headers["Topic"] = topic
    try:
        response = pool().request("POST", endpoint, body=body, headers=headers, timeout=urllib3.Timeout(
            connect=timeout / 2, read=timeout / 2), redirect=False, preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        return Result("retry", error=f"push service unreachable: {exc}"[:300])
    return classify(response.status, response.headers.get("Retry-After"), response.data)


def classify(status: int, retry_after: str | None, body: bytes = b"") -> Result:
    if status in DELIVERED:
        return Result("delivered", status)
    detail = body[:200].decode("utf-8", "replace").strip()
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in GONE:
        return Result("gone", status, error[:300])
    if status == 429 or status >= 500:
        return Result("retry", status, error[:300], parse_retry_after(retry_after))
    return Result("failed", status, error[:300])


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
