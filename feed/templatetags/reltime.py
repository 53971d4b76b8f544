"""Relative times ("just now", "5 minutes ago", "yesterday", "Nov 3"): `{{ dt|ago }}`.

The same rules as feed/static/feed/time.js, which refreshes every `<time datetime>` in the page
each minute (tests/test_relative_time.py runs both over one table and compares them):

- under a minute, or in the future: "just now"
- under an hour: "1 minute ago", "N minutes ago"
- under a day: "1 hour ago", "N hours ago"
- under two days: "yesterday"; under a week: "N days ago"
- then the date: "Nov 3" in the current year, "Nov 3, 2025" before it (in the current time zone
  here; in the browser's own time zone there).
"""
from datetime import datetime, tzinfo

from django import template
from django.utils import timezone

register = template.Library()

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MINUTE, HOUR, DAY = 60, 3600, 86400


def relative(value: datetime, now: datetime, tz: tzinfo) -> str:
    seconds = (now - value).total_seconds()
    if seconds < MINUTE:
        return "just now"
    if seconds < HOUR:
        n = int(seconds // MINUTE)
        return "1 minute ago" if n == 1 else f"{n} minutes ago"
    if seconds < DAY:
        n = int(seconds // HOUR)
        return "1 hour ago" if n == 1 else f"{n} hours ago"
    days = int(seconds // DAY)
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    local, today = value.astimezone(tz), now.astimezone(tz)
    label = f"{MONTHS[local.month - 1]} {local.day}"
    return label if local.year == today.year else f"{label}, {local.year}"


@register.filter
def ago(value) -> str:
    """`{{ post.created_at|ago }}`; anything but an aware datetime renders as nothing."""
    if not isinstance(value, datetime):
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return relative(value, timezone.now(), timezone.get_current_timezone())
