"""The VAPID `Authorization` header (RFC 8292): `vapid t=<JWT>, k=<public key>`.

The JWT (ES256, signed by py_vapid) names the push service's origin (`aud`), an expiry (`exp`,
at most 24 hours ahead: LIFETIME, 12 h) and who runs this server (`sub`, WEB_PUSH_SUBJECT). Its
claims depend only on the origin, so one signed token serves every push to that service until
shortly before it expires (REFRESH_BEFORE): signing is an EC signature, which would otherwise be
the second most expensive step of every push.
"""
import threading
import time
from urllib.parse import urlsplit

LIFETIME = 12 * 3600
REFRESH_BEFORE = 3600


class Signer:
    """Signs and caches VAPID headers per audience for one key pair and subject (thread-safe)."""

    def __init__(self, private_key: str, subject: str, *, clock=time.time):
        from py_vapid import Vapid02

        self._vapid = Vapid02.from_string(private_key)
        self.subject = subject
        self._clock = clock
        self._cache: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self.signed = 0  # how many tokens were signed (tests: the cache works)

    def header(self, endpoint: str) -> str:
        audience = origin(endpoint)
        now = self._clock()
        cached = self._cache.get(audience)
        if cached and cached[1] - now > REFRESH_BEFORE:
            return cached[0]
        with self._lock:
            cached = self._cache.get(audience)
            if cached and cached[1] - now > REFRESH_BEFORE:
                return cached[0]
            expires = int(now) + LIFETIME
            signed = self._vapid.sign({"aud": audience, "exp": expires, "sub": self.subject})["Authorization"]
            # py_vapid writes "vapid t=…,k=…"; RFC 8292 §3 separates the parameters with ", ".
            header = signed.replace(",k=", ", k=")
            self._cache[audience] = (header, expires)
            self.signed += 1
            return header


def origin(url: str) -> str:
    """scheme://host[:port] of a URL (the JWT's audience), the port only when not the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"
