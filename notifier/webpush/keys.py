"""The VAPID key pair (RFC 8292): what this server signs its pushes with, and what browsers
subscribe with (`applicationServerKey`).

Forms (what `manage.py vapid_keys` prints, and what the settings take):
- WEB_PUSH_VAPID_PRIVATE_KEY: the raw 32-byte P-256 private scalar, base64url without padding
  (a base64url DER PKCS#8 key is accepted too);
- WEB_PUSH_VAPID_PUBLIC_KEY: the uncompressed P-256 point (65 bytes), base64url without padding;
  derived from the private key when unset.

With DEBUG on and no private key set, a pair is generated once and kept in WEB_PUSH_KEY_FILE
(beside the SQLite database, git-ignored), so browsers' subscriptions survive restarts of
`make run`. Several processes may start at once: the file is written aside and linked into place,
so exactly one pair wins and everyone reads that one. Without keys and without DEBUG, Web Push is
off (current() is None).
"""
import base64
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

_lock = threading.Lock()
_cache: dict[tuple, "Keys"] = {}


@dataclass(frozen=True)
class Keys:
    private: str  # base64url raw scalar (or DER)
    public: str  # base64url uncompressed point


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url (padding optional); raises ValueError otherwise."""
    import binascii

    stripped = text.rstrip("=")
    if not stripped or any(c not in _B64URL for c in stripped) or len(stripped) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def generate() -> Keys:
    """A new pair, in the settings' forms."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return Keys(private=b64url(scalar), public=b64url(point))


def public_of(private: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid02

    vapid = Vapid02.from_string(private)
    return b64url(vapid.public_key.public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))


def current() -> Keys | None:
    """The configured pair, the local development pair (DEBUG), or None: Web Push is off."""
    private, public = settings.WEB_PUSH_VAPID_PRIVATE_KEY, settings.WEB_PUSH_VAPID_PUBLIC_KEY
    marker = (private, public, settings.DEBUG, settings.WEB_PUSH_KEY_FILE)
    keys = _cache.get(marker)
    if keys is not None:
        return keys
    with _lock:
        if private:
            keys = Keys(private=private, public=public or public_of(private))
        elif settings.DEBUG:
            keys = _local_pair(Path(settings.WEB_PUSH_KEY_FILE))
        else:
            return None
        _cache[marker] = keys
    return keys


def _local_pair(path: Path) -> Keys:
    """The development pair kept in `path`, made on first use."""
    if not path.exists():
        keys = generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"private_key": keys.private, "public_key": keys.public}, handle)
        try:
            os.link(aside, path)  # atomic, and fails if another process won the race
        except FileExistsError:
            pass
        finally:
            aside.unlink(missing_ok=True)
    data = json.loads(path.read_text())
    return Keys(private=data["private_key"], public=data["public_key"])
