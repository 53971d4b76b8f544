"""Render user text safely: escape everything, then link @mentions of users that exist."""
from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from feed.text import MENTION_RE

register = template.Library()


@register.filter
def with_mentions(text: str, mentioned_users) -> str:
    """Escaped text with line breaks, where `@name` links to the profile if that user was mentioned.

    `mentioned_users` is the object's prefetched mentions, so rendering a page runs no queries.
    Escaping first is safe: usernames are [A-Za-z0-9_] and escaped entities contain no "@".
    """
    known = {user.username.lower(): user.username for user in mentioned_users}

    def link(match):
        username = known.get(match.group(1).lower())
        if username is None:
            return match.group(0)
        return format_html('<a class="mention" href="{}">@{}</a>', reverse("profile", args=[username]), match.group(1))

    html = MENTION_RE.sub(link, escape(text))
    return mark_safe(html.replace("\n", "<br>"))
