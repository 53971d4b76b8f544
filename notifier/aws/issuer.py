"""Credential issuers: what a browser needs to open its own live connection, and nothing more.

POST /api/notifications/credentials/ returns `get_issuer().issue(user)`. Every issuer hands out a
client id with an unguessable random part and rights that end at `expires_at`:

- LocalIssuer (NOTIFIER_BACKEND=local): a token signed with SECRET_KEY whose claims name the client
  id and the topic filters; the local emulator checks it on CONNECT and keeps the filters for every
  SUBSCRIBE and delivery.
- AwsIssuer (NOTIFIER_BACKEND=aws): temporary AWS keys from sts.assume_role with a session policy
  that allows this one client id to subscribe to and receive this user's topics only
  (notifier.aws.policies), and a presigned wss:// URL for browsers.
"""
import logging
import re
from datetime import datetime, timezone

from django.conf import settings

from ..topics import post_comments_topic_filter, user_topic

log = logging.getLogger(__name__)


class CredentialsUnavailable(Exception):
    """The backend could not issue credentials (the API answers 503 with this message)."""


def topics_for(user_id: int) -> dict[str, str]:
    return {"notifications": user_topic(user_id), "post_comments": post_comments_topic_filter()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class LocalIssuer:
    def issue(self, user) -> dict:
        from ..localiot.tokens import issue_token, new_client_id  # light: signing only, no broker

        client_id = new_client_id(user.pk)
        topics = topics_for(user.pk)
        token, expires_at = issue_token(
            key=settings.SECRET_KEY, client_id=client_id, user_id=user.pk,
            topic_filters=list(topics.values()), ttl=settings.IOT_CREDENTIALS_TTL,
        )
        return {
            "backend": "local",
            "client_id": client_id,
            "url": f"ws://{settings.LOCALIOT_HOST}:{settings.LOCALIOT_WS_PORT}/mqtt",
            "username": str(user.pk),
            "password": token,
            "topics": topics,
            "expires_at": _iso(datetime.fromtimestamp(expires_at, tz=timezone.utc)),
        }


def role_session_name(user) -> str:
    """Names the user in CloudTrail: STS allows [\\w+=,.@-], 2 to 64 characters."""
    return re.sub(r"[^\w+=,.@-]", "-", f"herald-{user.pk}-{user.get_username()}")[:64]


class AwsIssuer:
    UNAVAILABLE = "Live notifications are unavailable right now; the page still works and will catch up."

    def issue(self, user) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        from . import clients as aws
        from .policies import dumps, session_policy
        from .presign import presign_wss_url
        from ..localiot.tokens import new_client_id

        if not settings.IOT_ROLE_ARN:
            log.error("credentials: IOT_ROLE_ARN is not set (NOTIFIER_BACKEND=aws)")
            raise CredentialsUnavailable(self.UNAVAILABLE)
        region = settings.AWS_REGION
        client_id = new_client_id(user.pk)
        try:
            aws.check_region(region)
            policy = session_policy(
                region=region, account=aws.account_of(settings.IOT_ROLE_ARN), prefix=settings.IOT_TOPIC_PREFIX,
                client_id=client_id, user_id=user.pk,
            )
            granted = aws.client("sts", region).assume_role(
                RoleArn=settings.IOT_ROLE_ARN,
                RoleSessionName=role_session_name(user),
                DurationSeconds=settings.IOT_CREDENTIALS_TTL,
                Policy=dumps(policy),
            )["Credentials"]
            endpoint = aws.data_endpoint()
        except (ClientError, BotoCoreError, ValueError) as exc:
            # One line, no traceback: the cause (AccessDenied, throttling, bad region...) is in it.
            log.error("credentials for user %s unavailable: %s: %s", user.pk, type(exc).__name__, exc)
            raise CredentialsUnavailable(self.UNAVAILABLE) from exc
        expires_at = granted["Expiration"]
        return {
            "backend": "aws",
            "client_id": client_id,
            "url": presign_wss_url(
                endpoint=endpoint, region=region, access_key_id=granted["AccessKeyId"],
                secret_access_key=granted["SecretAccessKey"], session_token=granted["SessionToken"],
                now=datetime.now(timezone.utc), expires=settings.IOT_CREDENTIALS_TTL,
            ),
            "username": None,
            "password": None,
            "topics": topics_for(user.pk),
            "expires_at": _iso(expires_at),
            "aws": {
                "access_key_id": granted["AccessKeyId"],
                "secret_access_key": granted["SecretAccessKey"],
                "session_token": granted["SessionToken"],
                "region": region,
                "endpoint": endpoint,
            },
        }


def get_issuer():
    return AwsIssuer() if settings.NOTIFIER_BACKEND == "aws" else LocalIssuer()
