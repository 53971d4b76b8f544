"""MQTT topic names (contract: README "Topics and messages")."""
from django.conf import settings


def user_topic(user_id: int) -> str:
    """The private topic only this user may subscribe to."""
    return f"{settings.IOT_TOPIC_PREFIX}/users/{int(user_id)}/notifications"


def post_comments_topic(post_id: int) -> str:
    """The public, read-only topic of live comments on one post."""
    return f"{settings.IOT_TOPIC_PREFIX}/posts/{int(post_id)}/comments"
