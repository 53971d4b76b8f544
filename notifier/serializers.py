"""API shape of a notification (contract: README "HTTP API")."""
from rest_framework import serializers

from . import inbox
from .envelope import actor_list, render_text
from .models import Digest, Kind, Notification


class NotificationActorSerializer(serializers.Serializer):
    username = serializers.CharField(allow_null=True)
    display_name = serializers.CharField()
    avatar = serializers.DictField(child=serializers.CharField(), allow_null=True,
                                   help_text="{small, medium, large} URLs of the actor's picture, or null.")


# How created_at is written (DRF's ISO 8601, "Z" for UTC), without building the serializer's
# fields for each request (a deep copy of every declared field).
_TIMESTAMP = serializers.DateTimeField()


class NotificationSerializer(serializers.ModelSerializer):
    """A notification, or a group of them ("Ana and 3 others liked your post"): `count` distinct
    actors, `actors` the 3 most recent (newest first), `actor` the most recent. Attach the groups'
    actors first (groups.attach_actors) to list many without a query each."""

    actor = serializers.SerializerMethodField()
    actors = serializers.SerializerMethodField()
    count = serializers.IntegerField(source="actor_count", read_only=True)
    text = serializers.CharField(source="display_text", read_only=True)
    read = serializers.BooleanField(source="is_read", read_only=True)
    # From the notification's event (list them with select_related("event")).
    url = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "seq", "kind", "actor", "actors", "count", "text", "url", "created_at", "read"]

    def get_actor(self, notification) -> NotificationActorSerializer:
        return actor_list(notification)[0]

    def get_actors(self, notification) -> NotificationActorSerializer(many=True):
        return actor_list(notification)

    def to_representation(self, notification) -> dict:
        """The declared fields, built in one step: every open bell and catch-up lists a page of
        these, and DRF's field-by-field walk was most of the request's Python time. The fields
        above still document the shape (the schema); a test holds the two equal."""
        actors = actor_list(notification)
        return {
            "id": notification.pk,
            "seq": notification.seq,
            "kind": notification.kind,
            "actor": actors[0],
            "actors": actors,
            "count": notification.actor_count,
            "text": render_text(notification.text, actors, notification.actor_count),
            "url": notification.url,
            "created_at": _TIMESTAMP.to_representation(notification.created_at),
            "read": notification.is_read,
        }


class UnreadCountSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField()
    unseen_count = serializers.IntegerField()


class SeenResultSerializer(serializers.Serializer):
    unseen_count = serializers.IntegerField()


def _kind_list(help_text: str):
    return serializers.ListField(
        child=serializers.ChoiceField(choices=Kind.choices), max_length=len(Kind.values), required=False,
        help_text=help_text,
    )


class ChannelsSerializer(serializers.Serializer):
    web_push = _kind_list("Kinds sent to this user's devices by Web Push.")
    email = _kind_list("Kinds listed in the email digest.")


class PreferencesSerializer(serializers.Serializer):
    """What a user is not notified about. PUT replaces the fields it names."""

    muted_kinds = _kind_list("Kinds never stored or sent on any channel: " + ", ".join(Kind.values) + ".")
    muted_posts = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), max_length=1000, required=False,
        help_text="Posts whose comments, replies, likes and mentions are never stored or pushed.",
    )
    channels = ChannelsSerializer(
        required=False,
        help_text="The kinds each channel beyond the inbox carries. A muted kind is on no channel. "
        "PUT replaces the lists it names.",
    )
    email_digest = serializers.ChoiceField(
        choices=Digest.choices, required=False,
        help_text="How often the email digest of unseen notifications goes out (to a verified address).",
    )


class ListQuerySerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, default=False, help_text="Only unread notifications.")
    filter = serializers.ChoiceField(
        choices=list(inbox.FILTERS), required=False, default=inbox.ALL, allow_blank=True,
        help_text="The page's tabs: all (also when empty), mentions (mentions and replies), unread (as ?unread=true).",
    )
    after_seq = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1,
        help_text="Catch-up after a reconnect: exactly the notifications with seq > N, oldest first, "
        "up to 100 a page (follow `next`).",
    )


class CatchUpPageSerializer(serializers.Serializer):
    results = NotificationSerializer(many=True)
    next = serializers.CharField(allow_null=True)
    last_seq = serializers.IntegerField()
    unread_count = serializers.IntegerField()
    unseen_count = serializers.IntegerField()


class ReadResultSerializer(serializers.Serializer):
    marked = serializers.IntegerField()
    unread_count = serializers.IntegerField()


class UnreadResultSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField()
