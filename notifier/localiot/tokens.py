"""Signed, expiring MQTT tokens for the local emulator (the local twin of AWS's scoped credentials).

The credential view calls issue_token(); the emulator's auth plugin calls verify_token() on the
CONNECT password. A token's claims are everything the broker needs to decide on a client:

    {"cid": client id it is bound to, "sub": user id, "filters": [topic filters], "exp": epoch}

Binding the token to one client id is what AWS's session policy does with `iot:Connect` on
`client/{client_id}`: a token leaked from one connection cannot be used to take over another.

These are pure functions of their arguments. They use Django's TimestampSigner with an explicit key
and `fallback_keys=[]`, because `django.core.signing.dumps()` reads settings (SECRET_KEY_FALLBACKS)
and the emulator may run without Django settings configured. Nothing here imports amqtt: the web
process imports this module.
"""
import secrets
import time

from django.core import signing

from . import topics

SALT = "herald.localiot.token"


class InvalidToken(Exception):
    """The token is forged, malformed, expired or bound to another client id; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _signer(key: str) -> signing.TimestampSigner:
    # An empty key would make Signer fall back to settings.SECRET_KEY: refuse it instead.
    if not isinstance(key, str) or not key:
        raise ValueError("A non-empty signing key is required.")
    return signing.TimestampSigner(key=key, salt=SALT, fallback_keys=[])


def new_client_id(user_id: int) -> str:
    """A fresh client id for one connection: the user id for humans, a random part for safety.

    The random part (128 bits) makes the id unguessable, so nobody can aim a CONNECT at someone
    else's session. Only letters, digits, '-' and '_' are used: valid in MQTT client ids and in
    AWS IoT client ARNs, and never a topic wildcard.
    """
    return f"herald-u{int(user_id)}-{secrets.token_urlsafe(16)}"


def _is_valid_client_id(client_id: str) -> bool:
    return (
        isinstance(client_id, str)
        and 0 < len(client_id) <= 128
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in client_id)
    )


def issue_token(
    *, key: str, client_id: str, user_id: int, topic_filters: list[str], ttl: int, now: float | None = None
) -> tuple[str, float]:
    """Sign a token for `client_id` allowing `topic_filters`; returns (token, expires_at epoch)."""
    if not _is_valid_client_id(client_id):
        raise ValueError(f"Invalid client id: {client_id!r}")
    if isinstance(topic_filters, str) or not topic_filters:
        raise ValueError("At least one topic filter is required.")
    filters = list(topic_filters)
    for topic_filter in filters:
        if not topics.is_valid_filter(topic_filter):
            raise ValueError(f"Invalid topic filter: {topic_filter!r}")
    if int(ttl) <= 0:
        raise ValueError("ttl must be positive.")
    issued_at = time.time() if now is None else now
    expires_at = float(issued_at + int(ttl))
    claims = {"cid": client_id, "sub": int(user_id), "filters": filters, "exp": expires_at}
    return _signer(key).sign_object(claims), expires_at


def verify_token(*, key: str, token: str, client_id: str, now: float | None = None) -> dict:
    """The claims of a valid token presented by `client_id`; raises InvalidToken otherwise."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidToken("malformed token") from None
    if not isinstance(token, str) or not token:
        raise InvalidToken("no token")
    try:
        claims = _signer(key).unsign_object(token)
    except signing.BadSignature:
        raise InvalidToken("bad signature") from None
    except Exception:  # a correctly signed token always decodes; anything else is not ours
        raise InvalidToken("malformed token") from None
    if not (
        isinstance(claims, dict)
        and isinstance(claims.get("cid"), str)
        and isinstance(claims.get("sub"), int)
        and isinstance(claims.get("filters"), list)
        and all(isinstance(f, str) for f in claims["filters"])
        and isinstance(claims.get("exp"), (int, float))
    ):
        raise InvalidToken("malformed claims")
    current = time.time() if now is None else now
    if current >= claims["exp"]:
        raise InvalidToken("expired")
    if not secrets.compare_digest(claims["cid"].encode(), str(client_id or "").encode()):
        raise InvalidToken("token belongs to another client id")
    return {"cid": claims["cid"], "sub": claims["sub"], "filters": claims["filters"], "exp": claims["exp"]}
