"""boto3 clients and the IoT data endpoint, made once per process, for AWS or the local emulator.

boto3 clients are made once per process (they are thread-safe and expensive to build), and the
account's data endpoint is discovered once per process when IOT_DATA_ENDPOINT is not set: a
DescribeEndpoint call per request would add latency and burn IoT's control-plane rate limit.

One path: with NOTIFIER_BACKEND=local the very same clients are made, only pointed at the
emulator (its HTTP API answers STS and iot-data) and signed with the local account's root keys
(notifier.aws.local). Nothing else in Herald knows which of the two it talks to.
"""
import functools
import re

from django.conf import settings

# Services the emulator answers, and the setting that may point each elsewhere.
LOCAL_SERVICES = {"sts": "AWS_ENDPOINT_URL_STS", "iot-data": None}


def _endpoint_and_keys(service: str) -> tuple[str | None, str | None, str | None]:
    """(endpoint_url, access key id, secret) for `service`; None means boto3's own default."""
    if settings.NOTIFIER_BACKEND == "local" and service in LOCAL_SERVICES:
        from . import local

        setting = LOCAL_SERVICES[service]
        key_id, secret = local.root_credentials()
        return (getattr(settings, setting, None) if setting else None) or local.endpoint_url(), key_id, secret
    if service == "iot-data":
        return f"https://{data_endpoint()}", None, None
    return None, None, None


def make_client(service: str, region: str, *, config=None):
    """A new boto3 client for `service` (callers that need their own timeouts or pool size)."""
    import boto3
    from botocore.config import Config

    endpoint, key_id, secret = _endpoint_and_keys(service)
    return boto3.client(
        service, region_name=region, endpoint_url=endpoint, aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=config or Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10),
    )


def client(service: str, region: str):
    """A process-wide boto3 client for `service` in `region` (standard retry mode).

    In local mode STS and iot-data go to the emulator, signed with the local root keys.
    """
    return _cached(service, region, *_endpoint_and_keys(service))


@functools.lru_cache(maxsize=None)
def _cached(service, region, endpoint, key_id, secret):
    return make_client(service, region)


def cache_clear() -> None:
    """Forget the clients and the discovered endpoint (tests that point settings elsewhere)."""
    _cached.cache_clear()
    _discover_endpoint.cache_clear()


@functools.lru_cache(maxsize=None)
def _discover_endpoint(region: str) -> str:
    # lru_cache keeps successes only: a failed discovery is tried again on the next call.
    response = client("iot", region).describe_endpoint(endpointType="iot:Data-ATS")
    return response["endpointAddress"]


def data_endpoint() -> str:
    """The IoT data endpoint host: IOT_DATA_ENDPOINT, or discovered once per process on AWS, or
    the emulator's WebSocket host:port locally."""
    if settings.NOTIFIER_BACKEND == "local":
        from . import local

        return settings.IOT_DATA_ENDPOINT or local.data_endpoint()
    return settings.IOT_DATA_ENDPOINT or _discover_endpoint(settings.AWS_REGION)


def wss_scheme() -> str:
    """`ws` for the local emulator's plain listener, `wss` everywhere else (AWS IoT is TLS only)."""
    return "ws" if settings.NOTIFIER_BACKEND == "local" else "wss"


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
