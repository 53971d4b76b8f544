"""The one credential issuer: what a browser needs to open its own live connection, and nothing more.

POST /api/notifications/credentials/ returns `StsIssuer().issue(user)`, on AWS and locally alike:
temporary keys from `sts.assume_role` on IOT_ROLE_ARN with a session policy that allows this one
client id to connect, and to subscribe to and receive this user's topics only
(notifier.aws.policies), plus a SigV4-presigned MQTT-over-WebSocket URL signed with those keys.

Locally the STS client and the data endpoint point at the emulator (notifier.aws.clients), which
issues the keys, checks the presigned URL and judges role policy ∩ session policy the way IoT Core
does; the URL is `ws://` because the emulator's listener is plain. Nothing else differs, so a
mistake in the URL or a policy shows up here first, not in production.
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


def role_session_name(user) -> str:
    """Names the user in CloudTrail: STS allows [\\w+=,.@-], 2 to 64 characters."""
    return re.sub(r"[^\w+=,.@-]", "-", f"herald-{user.pk}-{user.get_username()}")[:64]


class StsIssuer:
    UNAVAILABLE = "Live notifications are unavailable right now; the page still works and will catch up."

    def issue(self, user) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.parsers import ResponseParserError

        from . import clients
        from .policies import dumps, new_client_id, session_policy
        from .presign import presign_wss_url

        if not settings.IOT_ROLE_ARN:
            log.error("credentials: IOT_ROLE_ARN is not set")
            raise CredentialsUnavailable(self.UNAVAILABLE)
        region = settings.AWS_REGION
        client_id = new_client_id(user.pk)
        try:
            clients.check_region(region)
            policy = session_policy(
                region=region, account=clients.account_of(settings.IOT_ROLE_ARN), prefix=settings.IOT_TOPIC_PREFIX,
                client_id=client_id, user_id=user.pk,
            )
            granted = clients.client("sts", region).assume_role(
                RoleArn=settings.IOT_ROLE_ARN,
                RoleSessionName=role_session_name(user),
                DurationSeconds=settings.IOT_CREDENTIALS_TTL,
                Policy=dumps(policy),
            )["Credentials"]
            endpoint = clients.data_endpoint()
        except (ClientError, BotoCoreError, ResponseParserError, ValueError) as exc:
            # One line, no traceback: the cause (AccessDenied, throttling, bad region, a proxy's
            # HTML page instead of STS's XML...) is in it.
            log.error("credentials for user %s unavailable: %s: %s", user.pk, type(exc).__name__, exc)
            raise CredentialsUnavailable(self.UNAVAILABLE) from exc
        return {
            "backend": settings.NOTIFIER_BACKEND,
            "client_id": client_id,
            "url": presign_wss_url(
                endpoint=endpoint, region=region, access_key_id=granted["AccessKeyId"],
                secret_access_key=granted["SecretAccessKey"], session_token=granted["SessionToken"],
                now=datetime.now(timezone.utc), expires=settings.IOT_CREDENTIALS_TTL, scheme=clients.wss_scheme(),
            ),
            "topics": topics_for(user.pk),
            "expires_at": _iso(granted["Expiration"]),
            "aws": {
                "access_key_id": granted["AccessKeyId"],
                "secret_access_key": granted["SecretAccessKey"],
                "session_token": granted["SessionToken"],
                "region": region,
                "endpoint": endpoint,
            },
        }


def get_issuer() -> StsIssuer:
    return StsIssuer()
