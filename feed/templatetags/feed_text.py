"""Render user text safely: escape everything, then link URLs and @mentions of users that exist."""
from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from feed.text import MENTION_RE, find_links, link_href

register = template.Library()

# Links to what people wrote: no ranking credit, user content, no window.opener for the target.
LINK_REL = "nofollow ugc noopener"


def render_text(text: str, mentioned_users=()) -> str:
    """Escaped text where http(s) and www. URLs are links and `@name` links to the profile if that
    user was mentioned. URLs are found first, so a mention inside a URL stays part of the URL;
    each piece is escaped on its own, so no entity is ever split or read as part of a URL."""
    known = {user.username.lower(): user.username for user in mentioned_users}
    links = find_links(text)
    pieces = []
    at = 0

    def plain(until):
        """Text from `at` to `until`, escaped, with the mentions in it linked."""
        out, last = [], at
        # finditer with bounds: the lookbehind still sees the text before `at`.
        for match in MENTION_RE.finditer(text, at, until):
            username = known.get(match.group(1).lower())
            if username is None:
                continue
            out.append(escape(text[last:match.start()]))
            out.append(format_html('<a class="mention" href="{}">@{}</a>', reverse("profile", args=[username]),
                                   match.group(1)))
            last = match.end()
        out.append(escape(text[last:until]))
        return "".join(out)

    for start, end in links:
        pieces.append(plain(start))
        url = text[start:end]
        pieces.append(format_html('<a href="{}" rel="{}">{}</a>', link_href(url), LINK_REL, url))
        at = end
    pieces.append(plain(len(text)))
    return "".join(pieces)


@register.filter
def with_mentions(text: str, mentioned_users) -> str:
    """Escaped text with line breaks, links for URLs, and `@name` linked to the profile if that
    user was mentioned. `mentioned_users` is the object's prefetched mentions, so rendering a page
    runs no queries."""
    return mark_safe(render_text(text, mentioned_users).replace("\n", "<br>"))


@register.filter
def with_links(text: str) -> str:
    """Escaped text with links for URLs (a bio: no mentions, no line breaks)."""
    return mark_safe(render_text(text))
