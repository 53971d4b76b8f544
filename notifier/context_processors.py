"""Template context: the bell's unread count, read lazily so pages that do not show it pay nothing."""
from django.utils.functional import SimpleLazyObject

from .services import unread_count


def notifications(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_notifications": SimpleLazyObject(lambda: unread_count(user))}
