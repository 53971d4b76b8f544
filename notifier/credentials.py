"""Credential issuers: what a browser needs to open its own live connection, and nothing more.

POST /api/notifications/credentials/ returns `issuer().issue(user)`. Every issuer hands out a
client id with an unguessable random part and rights that end at `expires_at`:

- LocalIssuer (NOTIFIER_BACKEND=local): a token signed with SECRET_KEY whose claims name the client
  id and the topic filters; the local emulator verifies it on CONNECT and on every SUBSCRIBE.
"""
from datetime import datetime, timezone

from django.conf import settings

from .topics import post_comments_topic_filter, user_topic


class CredentialsUnavailable(Exception):
    """The backend could not issue credentials (the API answers 503 with this message)."""


def topics_for(user_id: int) -> dict[str, str]:
    return {"notifications": user_topic(user_id), "post_comments": post_comments_topic_filter()}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class LocalIssuer:
    def issue(self, user) -> dict:
        from .localiot.tokens import (  # light: signing only, no broker
            issue_token,
            new_client_id,
        )

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
            "expires_at": _iso(expires_at),
        }


def get_issuer():
    return LocalIssuer()
