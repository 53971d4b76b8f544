"""Stored notifications and each user's notification state.

The state row is the single source of truth for the bell: `unread_count` is kept exact by every
write in notifier.services (in the same transaction as the notification rows), so reading it is
one primary-key lookup, never a COUNT(*). `last_seq` numbers a user's notifications so a client
that reconnects can ask for exactly what it missed (`?after_seq=N`).

Notifications name what they are about by plain ids (post_ref, comment_ref), not generic foreign
keys and not foreign keys into the feed app: notifier does not depend on feed. The app that owns
those objects withdraws the notifications when it deletes them (services.withdraw).
"""
from django.conf import settings
from django.db import models


class Kind(models.TextChoices):
    COMMENT = "comment", "Comment on your post"
    REPLY = "reply", "Reply in a thread you joined"
    LIKE = "like", "Like"
    FOLLOW = "follow", "New follower"
    MENTION = "mention", "Mention"
    NEW_POST = "new_post", "New post"


class Delivery(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class NotificationState(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="notification_state"
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    unread_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(unread_count__gte=0), name="state_unread_not_negative"),
        ]

    def __str__(self):
        return f"{self.user}: seq {self.last_seq}, {self.unread_count} unread"


class NotificationQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(recipient=user)

    def unread(self):
        return self.filter(read_at__isnull=True)


class Notification(models.Model):
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    # SET_NULL, not CASCADE: deleting an actor's account must not silently change other users'
    # unread counts; the notification stays and shows "someone".
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    seq = models.PositiveBigIntegerField()
    post_ref = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    comment_ref = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    # Same event delivered twice (a retried fan-out chunk, like/unlike/like) stores one row.
    dedupe_key = models.CharField(max_length=100, null=True, blank=True)
    text = models.CharField(max_length=300)
    url = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    delivery = models.CharField(max_length=10, choices=Delivery.choices, default=Delivery.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When deliver_pending may try a pending push again (exponential backoff; see delivery.py).
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["recipient", "seq"], name="notification_seq_unique"),
            models.UniqueConstraint(fields=["recipient", "dedupe_key"], name="notification_dedupe_unique"),
        ]
        indexes = [
            models.Index(
                fields=["recipient", "-seq"],
                condition=models.Q(read_at__isnull=True),
                name="notification_unread_idx",
            ),
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(delivery="pending"),
                name="notification_pending_idx",
            ),
        ]

    def __str__(self):
        return f"{self.kind} for {self.recipient_id} (seq {self.seq})"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None
