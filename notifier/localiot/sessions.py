"""Temporary credentials from the local STS that need no storage, so they outlive a restart.

AWS never forgets the keys it issued: a browser holding keys from before an emulator restart must
still connect afterwards. Instead of a table of sessions, everything about a session travels in
its session token, authenticated with a key derived from the account's root secret:

    token  = base64( zlib(JSON claims) + HMAC-SHA256(token key, zlib(JSON claims)) )
    claims = {"v": 1, "k": access key id, "a": root key id, "r": role ARN, "n": session name,
              "p": session policy text or null, "i": issued at, "x": expires at}
    secret = base64( HMAC-SHA256(root secret, "session-secret:" + access key id) )[:40]

An emulator started with the same root key pair (runlocaliot derives it from SECRET_KEY) therefore
recognises every unexpired session it ever issued, and nothing else: a token changed in any bit,
or presented with another access key id, fails the MAC or the binding. Clients treat the token as
opaque base64, as they do AWS's. The role's own policy is not in the token: like IAM, the
emulator applies the role policy it has now, and a role it no longer knows ends its sessions.

No Django, no amqtt: pure functions of their arguments.
"""
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import zlib
from dataclasses import dataclass

VERSION = 1
ACCESS_KEY_PREFIX = "ASIA"  # AWS's prefix for temporary keys (long-term ones start with AKIA)
MAX_TOKEN_CHARS = 16 * 1024


class InvalidSessionToken(Exception):
    """The token is not one this account issued for that key id (or it is malformed)."""


@dataclass(frozen=True)
class Session:
    access_key_id: str
    role_arn: str
    session_name: str
    policy: str | None
    issued_at: int
    expires_at: int

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at


@dataclass(frozen=True)
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    session: Session


def _derive(root_secret: str, label: str) -> bytes:
    return hmac.new(root_secret.encode(), f"herald-localiot-sts:{label}".encode(), hashlib.sha256).digest()


class SessionTokens:
    """Issues and checks temporary credentials for one account's root key pair."""

    def __init__(self, *, root_access_key_id: str, root_secret_access_key: str):
        if not root_access_key_id or not root_secret_access_key:
            raise ValueError("The root access key id and secret access key are required.")
        self._root_key_id = root_access_key_id
        self._root_secret = root_secret_access_key
        self._mac_key = _derive(root_secret_access_key, "session-token")

    def secret_for(self, access_key_id: str) -> str:
        digest = _derive(self._root_secret, f"session-secret:{access_key_id}")
        return base64.b64encode(digest).decode()[:40]

    def issue(
        self, *, role_arn: str, session_name: str, policy: str | None, duration: int, now: float | None = None
    ) -> IssuedCredentials:
        issued_at = int(time.time() if now is None else now)
        key_id = ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()  # 16 characters
        session = Session(key_id, role_arn, session_name, policy, issued_at, issued_at + int(duration))
        claims = {
            "v": VERSION, "k": key_id, "a": self._root_key_id, "r": role_arn, "n": session_name,
            "p": policy, "i": session.issued_at, "x": session.expires_at,
        }
        packed = zlib.compress(json.dumps(claims, separators=(",", ":")).encode())
        mac = hmac.new(self._mac_key, packed, hashlib.sha256).digest()
        token = base64.b64encode(packed + mac).decode()
        return IssuedCredentials(key_id, self.secret_for(key_id), token, session)

    def open(self, access_key_id: str, token: str) -> Session:
        """The session behind (access key id, token); InvalidSessionToken unless this account issued it.

        Expiry is the caller's to judge (AWS answers an expired token differently from a forged one).
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidSessionToken("no or oversized token")
        try:
            raw = base64.b64decode(token.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise InvalidSessionToken("not base64") from None
        packed, mac = raw[:-32], raw[-32:]
        if len(raw) <= 32 or not hmac.compare_digest(mac, hmac.new(self._mac_key, packed, hashlib.sha256).digest()):
            raise InvalidSessionToken("bad token signature")
        try:
            claims = json.loads(zlib.decompress(packed))
            session = Session(
                access_key_id=claims["k"], role_arn=claims["r"], session_name=claims["n"], policy=claims["p"],
                issued_at=int(claims["i"]), expires_at=int(claims["x"]),
            )
        except (ValueError, KeyError, TypeError, zlib.error):  # authenticated, so only from a bug
            raise InvalidSessionToken("malformed claims") from None
        if claims.get("v") != VERSION or claims.get("a") != self._root_key_id:
            raise InvalidSessionToken("issued for another account key")
        if not hmac.compare_digest(session.access_key_id.encode(), access_key_id.encode()):
            raise InvalidSessionToken("token belongs to another access key id")
        return session
