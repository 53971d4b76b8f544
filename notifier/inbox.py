"""How the notifications page lays out a list: filter tabs, day sections and kind labels.

Shared by the page, its htmx pieces (the next page appended by infinite scroll, one row after
"Mark as unread") and the API list (`?filter=`), so a tab shows the same items everywhere.

Filters run on indexes that exist (notifier.models Meta): "unread" is the (recipient, seq) range
above the read watermark; "mentions" the partial (recipient, seq) index of mention and reply
items, so a mention among thousands of likes is found without stepping over the likes.
"""
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from django.utils.http import urlencode

from .models import Kind

ALL, MENTIONS, UNREAD = "all", "mentions", "unread"
FILTERS = {ALL: "All", MENTIONS: "Mentions and replies", UNREAD: "Unread"}
MENTION_KINDS = (Kind.MENTION, Kind.REPLY)

# What a row's icon says to a screen reader (the icon itself is decorative).
KIND_LABELS = {
    Kind.LIKE: "Like", Kind.FOLLOW: "New follower", Kind.MENTION: "Mention", Kind.COMMENT: "Comment",
    Kind.REPLY: "Reply", Kind.NEW_POST: "New post",
}


def filter_name(value) -> str:
    """The filter a query parameter names; anything else is All (the page never fails on it; the
    API validates it with ListQuerySerializer)."""
    return value if value in FILTERS else ALL


def filtered(queryset, name: str):
    """`queryset` (Notification.objects.for_user(...)) narrowed to the tab `name`."""
    if name == MENTIONS:
        return queryset.filter(kind__in=MENTION_KINDS)
    if name == UNREAD:
        return queryset.unread()
    return queryset


@dataclass(frozen=True)
class Section:
    key: str
    title: str


TODAY, THIS_WEEK, EARLIER = Section("today", "Today"), Section("week", "This week"), Section("earlier", "Earlier")
SECTIONS = {s.key: s for s in (TODAY, THIS_WEEK, EARLIER)}


def section_of(when, now=None, tz=None) -> Section:
    """Today (the same calendar day), This week (the six days before it) or Earlier, by the
    calendar in `tz` (the current time zone: the site's; Herald keeps no time zone per user)."""
    tz = tz or timezone.get_current_timezone()
    today = (now or timezone.now()).astimezone(tz).date()
    day = when.astimezone(tz).date()
    if day >= today:
        return TODAY
    if day > today - timedelta(days=7):
        return THIS_WEEK
    return EARLIER


def with_sections(notifications, previous: str = "", now=None) -> list:
    """Set `kind_label` and `section` on each notification and `heading` on the first of each section, unless it
    continues `previous` (the section the page above ended in: infinite scroll must not repeat
    a heading). Items come newest first, so sections only ever move on."""
    now = now or timezone.now()
    for n in notifications:
        n.kind_label = KIND_LABELS.get(n.kind, "Notification")
        n.section = section_of(n.created_at, now)
        n.heading = n.section.key != previous
        previous = n.section.key
    return notifications


def page_queries(tab: str, next_before, last_section: str) -> dict:
    """The query strings of the next page: `older_query` for the plain link (a whole page),
    `more_query` for infinite scroll (its rows, continuing the section the list ends in)."""
    if next_before is None:
        return {}
    tab_part = {} if tab == ALL else {"filter": tab}
    return {
        "older_query": urlencode({**tab_part, "before": next_before}),
        "more_query": urlencode({**tab_part, "before": next_before, "section": last_section}),
    }
