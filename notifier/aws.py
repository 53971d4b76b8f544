"""AWS IoT Core specifics: the data endpoint, boto3 clients, and the browser's presigned WSS URL.

boto3 clients are made once per process (they are thread-safe and expensive to build), and the
account's data endpoint is discovered once per process when IOT_DATA_ENDPOINT is not set: a
DescribeEndpoint call per request would add latency and burn IoT's control-plane rate limit.
"""
import functools
import hashlib
import hmac
import re
from datetime import datetime
from urllib.parse import quote

from django.conf import settings

WSS_SERVICE = "iotdevicegateway"
WSS_PATH = "/mqtt"


@functools.lru_cache(maxsize=None)
def client(service: str, region: str):
    """A process-wide boto3 client for `service` in `region` (standard retry mode)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, region_name=region,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10),
    )


@functools.lru_cache(maxsize=None)
def _discover_endpoint(region: str) -> str:
    # lru_cache keeps successes only: a failed discovery is tried again on the next call.
    response = client("iot", region).describe_endpoint(endpointType="iot:Data-ATS")
    return response["endpointAddress"]


def data_endpoint() -> str:
    """The account's IoT data endpoint host: IOT_DATA_ENDPOINT, or discovered once per process."""
    return settings.IOT_DATA_ENDPOINT or _discover_endpoint(settings.AWS_REGION)


# us-east-1, us-gov-west-1, us-isob-east-1, eusc-de-east-1, ap-southeast-5...
REGION_RE = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$")


def check_region(region: str) -> str:
    """Refuse a malformed region up front, rather than after DNS and connection timeouts."""
    if not REGION_RE.match(region or ""):
        raise ValueError(f"unknown AWS region {region!r}")
    return region


def account_of(role_arn: str) -> str:
    """The account id in an ARN (arn:aws:iam::123456789012:role/name)."""
    parts = role_arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or not parts[4].isdigit():
        raise ValueError(f"not an IAM role ARN: {role_arn!r}")
    return parts[4]


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def presign_wss_url(
    *, endpoint: str, region: str, access_key_id: str, secret_access_key: str,
    session_token: str | None, now: datetime, expires: int,
) -> str:
    """`wss://{endpoint}/mqtt?…` signed with SigV4 query parameters for AWS IoT's WebSocket gateway.

    As AWS IoT requires (and its device SDKs do), the session token is not part of the signature:
    `X-Amz-Security-Token` is appended after signing. Only the `host` header is signed, since the
    browser adds its own handshake headers. `now` must be UTC.
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
    url = f"wss://{endpoint}{WSS_PATH}?{query}&X-Amz-Signature={signature}"
    if session_token:
        url += f"&X-Amz-Security-Token={_quote(session_token)}"
    return url
