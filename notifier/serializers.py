"""API shape of a notification (contract: README "HTTP API")."""
from rest_framework import serializers

from .envelope import actor_dict
from .models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    read = serializers.BooleanField(source="is_read", read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "seq", "kind", "actor", "text", "url", "created_at", "read"]

    def get_actor(self, notification) -> dict:
        return actor_dict(notification.actor)


class UnreadCountSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField()


class ListQuerySerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, default=False, help_text="Only unread notifications.")
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


class ReadResultSerializer(serializers.Serializer):
    marked = serializers.IntegerField()
    unread_count = serializers.IntegerField()
