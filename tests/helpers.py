"""Assertions shared by tests."""
from notifier.models import Notification, NotificationState


def state_of(user) -> NotificationState:
    return NotificationState.objects.get(pk=user.pk)


def assert_count_exact(*users):
    """The stored unread count equals what COUNT(*) says (the invariant every write must keep)."""
    for user in users:
        actual = Notification.objects.filter(recipient=user, read_at__isnull=True).count()
        stored = NotificationState.objects.filter(pk=user.pk).values_list("unread_count", flat=True).first() or 0
        assert stored == actual, f"{user}: stored unread_count {stored} != {actual} unread rows"


def kinds_of(user) -> list[str]:
    return list(Notification.objects.filter(recipient=user).order_by("seq").values_list("kind", flat=True))
