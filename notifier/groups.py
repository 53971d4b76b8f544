"""Grouped notifications: the window an activity's group belongs to, and who is in a group.

A group's key is `<group>:<window number>` (windows of NOTIFICATION_GROUP_WINDOW seconds, 24 h by
default, counted from the epoch as Mastodon does): activity in the same window lands on one row,
the next window starts a new item, and the key is fixed when the row is written, so a unique index
on (recipient, key) is what keeps two concurrent writers from splitting a group.

A MEMBERS item's `actor_count` counts the people in it. A NEWEST item (one author's new posts)
has one actor, and its `actor_count` counts the posts it stands for: each newer post that moves it
adds one. So its text names the author when it is written (fixed_text), never "Ana and 2 others".
When one of those posts is deleted the item loses one from its count, and when it was the newest
the item moves back to the newest one left (services.withdraw_post, given what feed knows of the
author's other posts as Shown); it goes only with the last.
"""
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from .envelope import ACTORS, actor_dict
from .models import GROUPED, MEMBERS, NEWEST, NotificationActor

SHOWN_ACTORS = 3
TEXT_LENGTH = 300  # Notification.text


def group_key(group: str, now) -> str:
    return f"{group}:{int(now.timestamp()) // settings.NOTIFICATION_GROUP_WINDOW}"


def fixed_text(kind: str, text: str, actor) -> str:
    """The text to store: a NEWEST group's "{actors}" is filled in with its one actor now, since
    its count counts posts and would otherwise be shown as other people."""
    if GROUPED.get(kind) == NEWEST and text.startswith(ACTORS):
        text = actor_dict(actor)["display_name"] + text[len(ACTORS):]
    return text[:TEXT_LENGTH]


@dataclass(frozen=True)
class Shown:
    """A post a NEWEST item can show instead of a deleted newer one, as its notice would say it;
    `untold`: users its fan-out did not tell with a new_post (it mentioned them instead)."""

    post_ref: int
    text: str
    url: str
    created_at: datetime
    untold: frozenset = field(default_factory=frozenset)


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
