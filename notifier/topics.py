"""MQTT topic names (contract: README "Topics and messages")."""
from django.conf import settings


def user_topic(user_id: int) -> str:
    """The private topic only this user may subscribe to."""
    return f"{settings.IOT_TOPIC_PREFIX}/users/{int(user_id)}/notifications"


def post_comments_topic(post_id: int) -> str:
    """The public, read-only topic of live comments on one post."""
    return f"{settings.IOT_TOPIC_PREFIX}/posts/{int(post_id)}/comments"


def post_comments_topic_filter() -> str:
    """The filter covering every post's public comment topic (read-only for everyone)."""
    return f"{settings.IOT_TOPIC_PREFIX}/posts/+/comments"
