"""The browser's MQTT-over-WebSocket URL for AWS IoT Core, SigV4 query-signed."""
import hashlib
import hmac
from datetime import datetime
from urllib.parse import quote

WSS_SERVICE = "iotdevicegateway"
WSS_PATH = "/mqtt"


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def presign_wss_url(
    *, endpoint: str, region: str, access_key_id: str, secret_access_key: str,
    session_token: str | None, now: datetime, expires: int, scheme: str = "wss",
) -> str:
    """`wss://{endpoint}/mqtt?…` (or `ws://` for the local emulator, `scheme="ws"`) signed with SigV4 query parameters for AWS IoT's WebSocket gateway.

    As AWS IoT requires (and its device SDKs do), the session token is not part of the signature:
    `X-Amz-Security-Token` is appended after signing. Only the `host` header is signed, since the
    browser adds its own handshake headers. `now` must be UTC. `endpoint` is the host, with
    `:port` when it is not the scheme's default (the signed Host header is what the client sends).
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now.strftime('%Y%m%d')}/{region}/{WSS_SERVICE}/aws4_request"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key_id}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(int(expires)),
        "X-Amz-SignedHeaders": "host",
    }
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
    canonical_request = "\n".join(
        ["GET", WSS_PATH, query, f"host:{endpoint}\n", "host", hashlib.sha256(b"").hexdigest()]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_access_key).encode("utf-8")
    for part in (now.strftime("%Y%m%d"), region, WSS_SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    url = f"{scheme}://{endpoint}{WSS_PATH}?{query}&X-Amz-Signature={signature}"
    if session_token:
        url += f"&X-Amz-Security-Token={_quote(session_token)}"
    return url
