"""Grouped notifications: the window an activity's group belongs to, and who is in a group.

A group's key is `<group>:<window number>` (windows of NOTIFICATION_GROUP_WINDOW seconds, 24 h by
default, counted from the epoch as Mastodon does): activity in the same window lands on one row,
the next window starts a new item, and the key is fixed when the row is written, so a unique index
on (recipient, key) is what keeps two concurrent writers from splitting a group.
"""
from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from .envelope import actor_dict
from .models import GROUPED, MEMBERS, NotificationActor

SHOWN_ACTORS = 3


def group_key(group: str, now) -> str:
    return f"{group}:{int(now.timestamp()) // settings.NOTIFICATION_GROUP_WINDOW}"


def recent_actors(notification_ids) -> dict[int, list[dict]]:
    """Up to SHOWN_ACTORS most recent members of each group, newest first, in one query."""
    if not notification_ids:
        return {}
    rows = (
        NotificationActor.objects.filter(notification_id__in=list(notification_ids))
        .annotate(rank=Window(RowNumber(), partition_by=F("notification_id"), order_by=(F("created_at").desc(), F("pk").desc())))
        .filter(rank__lte=SHOWN_ACTORS)
        .select_related("actor")
        .order_by("notification_id", "rank")
    )
    found: dict[int, list[dict]] = {}
    for row in rows:
        found.setdefault(row.notification_id, []).append(actor_dict(row.actor))
    return found


def needs_members(notification) -> bool:
    return GROUPED.get(notification.kind) == MEMBERS and (notification.actor_count or 1) > 1


def attach_actors(notifications) -> list:
    """Set `actor_list` on each grouped notification with more than one actor (one query for all)."""
    notifications = list(notifications)
    recent = recent_actors([n.pk for n in notifications if needs_members(n)])
    for n in notifications:
        if n.pk in recent:
            n.actor_list = recent[n.pk]
    return notifications
