"""Credentials for tests, vended the way production vends them (no shortcut past STS).

    keys = vend(iot, root=(key_id, secret), user_id=42)
    keys.url        # presigned ws://…/mqtt?X-Amz-… for keys.client_id, as a browser gets it

boto3's `sts` client, pointed at the emulator and signed with the account's root keys, assumes the
browser role with the session policy from notifier.aws.policies; the URL is presign_wss_url()'s.
Only the endpoint differs from AWS.
"""
from dataclasses import dataclass
from datetime import datetime, timezone

import boto3
import pytest

from notifier.aws.local import ACCOUNT, ROLE_ARN
from notifier.aws.policies import dumps, new_client_id, role_policy, session_policy
from notifier.aws.presign import presign_wss_url
from notifier.localiot.config import stage_policy

PREFIX = "herald/dev"
# A test account's root key pair (the settings' own pair comes from notifier.aws.local).
ROOT_KEYS = ("AKIALOCALIOTTEST0001", "local-iot-test-secret-000000000000000000")


def emulator_options(**overrides) -> dict:
    """LocalIoT arguments for the dev stage's account under ROOT_KEYS: the stage's Lambda policy for
    the root keys (zappa_settings.json), the browser role (policies.role_policy); free ports."""
    return {
        "host": "127.0.0.1",
        "root_access_key_id": ROOT_KEYS[0],
        "root_secret_access_key": ROOT_KEYS[1],
        "region": "us-east-1",
        "account": ACCOUNT,
        "root_policy": stage_policy("dev"),
        "roles": {ROLE_ARN: role_policy(region="us-east-1", account=ACCOUNT, prefix=PREFIX)},
    } | overrides


@dataclass(frozen=True)
class Keys:
    client_id: str
    url: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    def presign(self, iot, *, now: datetime | None = None, expires: int = 900, endpoint: str | None = None) -> str:
        """Another presigned URL from the same session keys (another time, lifetime or host)."""
        return presign_wss_url(
            endpoint=endpoint or iot.ws_endpoint, region=iot.region, access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key, session_token=self.session_token,
            now=now or datetime.now(timezone.utc), expires=expires, scheme="ws",
        )


def sts_client(iot, root: tuple[str, str]):
    key_id, secret = root
    return boto3.client(
        "sts", endpoint_url=iot.http_url, region_name=iot.region, aws_access_key_id=key_id, aws_secret_access_key=secret
    )


def iot_data_client(iot, root: tuple[str, str]):
    key_id, secret = root
    return boto3.client(
        "iot-data", endpoint_url=iot.http_url, region_name=iot.region, aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def vend(
    iot, *, root: tuple[str, str], user_id: int = 42, client_id: str | None = None, policy: dict | None = None,
    role_arn: str = ROLE_ARN, duration: int = 900, prefix: str = PREFIX,
) -> Keys:
    """STS AssumeRole with Herald's session policy for one user and client id, then a presigned URL."""
    client_id = client_id or new_client_id(user_id)
    if policy is None:
        policy = session_policy(region=iot.region, account=ACCOUNT, prefix=prefix, client_id=client_id, user_id=user_id)
    granted = sts_client(iot, root).assume_role(
        RoleArn=role_arn, RoleSessionName=f"herald-{user_id}", DurationSeconds=duration, Policy=dumps(policy),
    )["Credentials"]
    keys = Keys(
        client_id=client_id, url="", access_key_id=granted["AccessKeyId"],
        secret_access_key=granted["SecretAccessKey"], session_token=granted["SessionToken"],
        expiration=granted["Expiration"],
    )
    return Keys(**{**keys.__dict__, "url": keys.presign(iot)})


def sign_as_of(monkeypatch, moment: datetime) -> None:
    """Make boto3 sign its requests as if it were `moment` (a client with a wrong clock)."""
    import botocore.auth

    def clock(remove_tzinfo=True):
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    # botocore signs with its own Python signer, or with awscrt's when awscrt is installed.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", clock)
    try:
        import botocore.crt.auth as crt_auth
    except ImportError:
        return
    monkeypatch.setattr(crt_auth, "get_current_datetime", clock)


@pytest.fixture(scope="module")
def iot():
    """An emulator for the test account (ROOT_KEYS, the dev stage's policies) on free ports, one a
    module."""
    from notifier.localiot.server import LocalIoT

    running = LocalIoT(**emulator_options()).start_in_thread()
    try:
        yield running.iot
    finally:
        running.stop()
