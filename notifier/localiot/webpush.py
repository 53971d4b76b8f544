"""A local Web Push service (a subset of RFC 8030, with RFC 8292 VAPID checks) on the emulator's
HTTP port, for `make run` and the tests: what FCM or Mozilla's autopush are to a real browser.

    POST   /push/                      mint a subscription endpoint: 201 {"endpoint": URL}
                                       (any token works: /push/<token> needs no minting)
    GET    /push/                      {"accepted": messages accepted so far, "tokens": how many got any}
    POST   /push/<token>               a push message: body aes128gcm (RFC 8291), headers TTL (required),
                                       Content-Encoding: aes128gcm (required), Urgency, Topic,
                                       Authorization: vapid t=<JWT>, k=<public key>
                                       -> 201 Created, Location: /push/<token>/messages/<id>
    GET    /push/<token>/messages      the messages accepted for the token (JSON: headers, base64 body)
    DELETE /push/<token>/messages      forget them
    POST   /push/<token>/mode          {"status": 410|429|413|500|201, "retry_after": "5"|HTTP date, "times": N}:
                                       answer the next N pushes (all, without `times`) with that status

Refusals, with a reason in the JSON body:
    400  no or bad TTL, Content-Encoding other than aes128gcm, bad Urgency, empty body
    401  no `vapid` Authorization; a JWT that is malformed, not ES256, not signed by `k`, for another
         audience (aud must be this endpoint's origin), expired or more than 24 h ahead, or without a
         `sub` (mailto: or https:)
    403  `k` differs from the key this token's first accepted push used (a real service binds a
         subscription to its applicationServerKey)
    413  a body over 4096 bytes

A verified JWT is remembered (by its text) so a burst to the same origin does not pay for an
ECDSA verification per message; its claims are checked on every message all the same.
Everything is in memory; `messages(token)` and `set_mode(token, ...)` are the Python accessors.
"""
import base64
import json
import secrets
import time
from collections import defaultdict

PREFIX = "/push/"
MAX_BODY = 4096
MAX_JWT_AHEAD = 24 * 3600
CLOCK_SKEW = 60
URGENCIES = {"very-low", "low", "normal", "high"}


class PushRefused(Exception):
    def __init__(self, status: int, reason: str, retry_after: str | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class LocalPushService:
    """In-memory push service state: accepted messages per token, test modes, verified tokens."""

    def __init__(self, *, clock=time.time):
        self._messages: dict[str, list[dict]] = defaultdict(list)
        self._modes: dict[str, dict] = {}
        self._bound_keys: dict[str, str] = {}
        self._verified: dict[tuple[str, str], dict] = {}
        self._clock = clock
        self.accepted = 0

    # -- Python accessors (tests) -------------------------------------------------------------

    def messages(self, token: str) -> list[dict]:
        return list(self._messages.get(token, []))

    def clear(self, token: str | None = None) -> None:
        if token is None:
            self._messages.clear()
        else:
            self._messages.pop(token, None)

    def set_mode(self, token: str, status: int | None, *, retry_after: str | None = None, times: int | None = None):
        """Answer the next `times` pushes to `token` (every one when None) with `status`; None: normal."""
        if status is None:
            self._modes.pop(token, None)
        else:
            self._modes[token] = {"status": int(status), "retry_after": retry_after, "times": times}

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(16)

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, header, body: bytes, origin: str) -> tuple[int, dict, dict]:
        """(status, JSON body, extra headers) for a request under /push/. `header(name)` reads a
        request header; `origin` is this service's origin as the client addressed it."""
        rest = path[len(PREFIX):]
        parts = rest.split("/") if rest else []
        try:
            if not parts and method == "POST":
                return 201, {"endpoint": f"{origin}{PREFIX}{self.new_token()}"}, {}
            if not parts and method == "GET":
                return 200, {"accepted": self.accepted, "tokens": len(self._messages)}, {}
            if len(parts) == 1 and parts[0] and method == "POST":
                return self._push(parts[0], header, body, origin)
            if len(parts) == 2 and parts[1] == "messages" and method in ("GET", "DELETE"):
                if method == "DELETE":
                    self.clear(parts[0])
                    return 200, {"deleted": True}, {}
                return 200, {"messages": [self._public(m) for m in self.messages(parts[0])]}, {}
            if len(parts) == 2 and parts[1] == "mode" and method == "POST":
                try:
                    spec = json.loads(body or b"{}")
                    self.set_mode(parts[0], spec.get("status"), retry_after=spec.get("retry_after"),
                                  times=spec.get("times"))
                except (ValueError, TypeError, AttributeError):
                    raise PushRefused(400, "The mode is JSON: {status, retry_after?, times?}.") from None
                return 200, {"mode": self._modes.get(parts[0])}, {}
            raise PushRefused(404, f"No push resource at {path[:200]}.")
        except PushRefused as exc:
            extra = {"Retry-After": exc.retry_after} if exc.retry_after is not None else {}
            return exc.status, {"reason": exc.reason}, extra

    def _push(self, token: str, header, body: bytes, origin: str) -> tuple[int, dict, dict]:
        ttl = header("ttl")
        if ttl is None or not ttl.strip().isdigit():
            raise PushRefused(400, "A TTL header (seconds) is required.")
        if (header("content-encoding") or "").strip().lower() != "aes128gcm":
            raise PushRefused(400, "Content-Encoding must be aes128gcm (RFC 8291).")
        urgency = header("urgency")
        if urgency is not None and urgency.strip().lower() not in URGENCIES:
            raise PushRefused(400, "Urgency must be very-low, low, normal or high.")
        key = self._check_vapid(token, header("authorization"), origin)
        if not body:
            raise PushRefused(400, "An encrypted body is required.")
        if len(body) > MAX_BODY:
            raise PushRefused(413, f"The body is over {MAX_BODY} bytes.")
        mode = self._modes.get(token)
        if mode is not None:
            if mode["times"] is not None:
                mode["times"] -= 1
                if mode["times"] <= 0:
                    self._modes.pop(token, None)
            if mode["status"] not in (200, 201, 202):
                raise PushRefused(mode["status"], f"Answering {mode['status']} as asked (test mode).",
                                  mode.get("retry_after"))
        self._bound_keys.setdefault(token, key)
        message_id = secrets.token_urlsafe(8)
        self._messages[token].append({
            "id": message_id, "body": body, "received_at": self._clock(),
            "headers": {name: header(name) for name in ("TTL", "Urgency", "Topic", "Content-Encoding",
                                                          "Authorization", "Content-Type") if header(name) is not None},
        })
        self.accepted += 1
        return 201, {}, {"Location": f"{PREFIX}{token}/messages/{message_id}", "TTL": ttl.strip()}

    def _check_vapid(self, token: str, authorization: str | None, origin: str) -> str:
        """The public key `k` of a valid VAPID Authorization; PushRefused otherwise."""
        scheme, _, params = (authorization or "").strip().partition(" ")
        if scheme.lower() != "vapid":
            raise PushRefused(401, "Authorization: vapid t=<JWT>, k=<public key> is required (RFC 8292).")
        values = {}
        for part in params.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                values[name.strip().lower()] = value.strip()
        jwt, key = values.get("t"), values.get("k")
        if not jwt or not key:
            raise PushRefused(401, "The vapid Authorization needs both t (the JWT) and k (the public key).")
        claims = self._verified.get((jwt, key))
        if claims is None:
            claims = _verify(jwt, key)
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[(jwt, key)] = claims
        now = self._clock()
        if claims.get("aud") != origin:
            raise PushRefused(401, f"The JWT's aud must be this push service's origin, {origin}.")
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise PushRefused(401, "The JWT needs an integer exp.")
        if exp <= now:
            raise PushRefused(401, "The JWT has expired.")
        if exp > now + MAX_JWT_AHEAD + CLOCK_SKEW:
            raise PushRefused(401, "The JWT's exp must be at most 24 hours ahead.")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
            raise PushRefused(401, "The JWT needs a sub claim (mailto: or https: contact).")
        bound = self._bound_keys.get(token)
        if bound is not None and bound != key:
            raise PushRefused(403, "This subscription belongs to another application server key.")
        return key

    @staticmethod
    def _public(message: dict) -> dict:
        return {**{k: v for k, v in message.items() if k != "body"},
                "body": base64.b64encode(message["body"]).decode("ascii")}


def _verify(jwt: str, key: str) -> dict:
    """The JWT's claims once its ES256 signature checks out against `key`; 401 otherwise."""
    from cryptography.exceptions import InvalidSignature
    from py_vapid import jwt as vapid_jwt
    from py_vapid.utils import b64urldecode

    try:
        header = json.loads(b64urldecode(jwt.split(".")[0].encode()))
    except (ValueError, IndexError):
        raise PushRefused(401, "The JWT is malformed.") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise PushRefused(401, "The JWT must be signed with ES256.")
    try:
        claims = vapid_jwt.decode(jwt, key)
    except (InvalidSignature, ValueError, TypeError):
        raise PushRefused(401, "The JWT's signature does not verify with k.") from None
    if not isinstance(claims, dict):
        raise PushRefused(401, "The JWT's claims must be a JSON object.")
    return claims
