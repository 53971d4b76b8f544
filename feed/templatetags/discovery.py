"""Finding people on pages: `{% who_to_follow user %}` renders up to five suggestions."""
from django import template

from feed import queries

register = template.Library()


@register.inclusion_tag("feed/_who_to_follow.html", takes_context=True)
def who_to_follow(context, user, exclude=None, limit=5):
    """Who to follow for `user` (nothing for a visitor), the same suggestions as
    GET /api/users/?suggested=1; `exclude` leaves one person out (the profile being viewed)."""
    request = context.get("request")
    people = []
    if user is not None and user.is_authenticated:
        people = queries.suggested_users(user, limit + 1)
        people = [person for person in people if exclude is None or person.pk != exclude.pk][:limit]
    return {
        "people": people,
        "user": user,
        "csrf_token": context.get("csrf_token"),
        "next": request.get_full_path() if request else "",
    }
