"""Assertions shared by tests."""
from notifier.models import Notification, NotificationState


def state_of(user) -> NotificationState:
    return NotificationState.objects.get(pk=user.pk)


def assert_count_exact(*users):
    """The stored unread and unseen counts equal what COUNT(*) says (the invariant every write
    must keep): the bell counts items exactly as the list shows them."""
    for user in users:
        actual = Notification.objects.for_user(user).unread().count()
        state = NotificationState.objects.filter(pk=user.pk).first() or NotificationState(user_id=user.pk)
        assert state.unread_count == actual, f"{user}: stored unread_count {state.unread_count} != {actual} unread rows"
        unseen = Notification.objects.filter(recipient_id=user.pk, seq__gt=state.seen_seq).count()
        assert state.unseen_count == unseen, f"{user}: stored unseen_count {state.unseen_count} != {unseen} unseen rows"
        assert state.read_seq <= state.last_seq and state.seen_seq <= state.last_seq


def kinds_of(user) -> list[str]:
    return list(Notification.objects.filter(recipient=user).order_by("seq").values_list("kind", flat=True))


def push_of(notification) -> tuple:
    """(state, attempts, last_error) of a notification's push; a delivered one owes nothing."""
    from notifier.models import PendingPush

    owed = PendingPush.objects.filter(pk=getattr(notification, "pk", notification)).first()
    if owed is None:
        return ("delivered", None, "")
    return (owed.state, owed.attempts, owed.last_error)


def make_due(notification) -> None:
    """Bring a pending push's next attempt forward to now."""
    from datetime import timedelta

    from django.utils import timezone

    from notifier.models import PendingPush

    PendingPush.objects.filter(pk=getattr(notification, "pk", notification)).update(
        due_at=timezone.now() - timedelta(seconds=1)
    )


def make_followers(author, count, prefix="fan"):
    """`count` new accounts following `author`."""
    from feed.models import Follow, User

    fans = User.objects.bulk_create([User(username=f"{prefix}{i}") for i in range(count)])
    Follow.objects.bulk_create([Follow(follower=fan, followee=author) for fan in fans])
    return fans


def assert_follower_counts_exact(users=None):
    """Every stored follower count (feed.counters) equals COUNT(*) of the follows."""
    from feed import counters

    wrong = counters.wrong_counts(None if users is None else [u.pk for u in users])
    assert not wrong, f"follower counts off (user id, stored, actual): {wrong[:20]}"
