"""Template context: the bell's state, read lazily so pages that do not show it pay nothing."""
from django.utils.functional import SimpleLazyObject

from .models import NotificationState


def notifications(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def load():
        # One primary-key read gives both the exact unread count and the last seq (for catch-up).
        return NotificationState.of(user)

    return {"notification_state": SimpleLazyObject(load)}
