"""boto3 clients and the IoT data endpoint, made once per process.

boto3 clients are made once per process (they are thread-safe and expensive to build), and the
account's data endpoint is discovered once per process when IOT_DATA_ENDPOINT is not set: a
DescribeEndpoint call per request would add latency and burn IoT's control-plane rate limit.
"""
import functools
import re

from django.conf import settings


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
