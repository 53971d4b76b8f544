"""The JSON messages pushed to clients (contract: README "Topics and messages").

Versioned (`"v": 1`) so clients can ignore what they do not understand. Text is plain: clients
insert it with textContent, never as HTML.
"""
import json

ENVELOPE_VERSION = 1
# A grouped notification's stored text starts with this; it becomes "Ana", "Ana and Ben" or
# "Ana and 3 others" when shown (render_text), so a group's text never goes stale as people join
# or leave it.
ACTORS = "{actors}"


def actor_dict(actor) -> dict:
    """Who did it, as clients show them; `avatar` is the user model's `avatar_urls` ({small,
    medium, large} URLs), or None: clients show initials then."""
    if actor is None:
        return {"username": None, "display_name": "Someone", "avatar": None}
    return {
        "username": actor.get_username(),
        "display_name": getattr(actor, "display_name", "") or actor.get_username(),
        "avatar": getattr(actor, "avatar_urls", None),
    }


def actors_phrase(actors: list[dict], count: int) -> str:
    names = [a["display_name"] for a in actors] or ["Someone"]
    if count <= 1:
        return names[0]
    if count == 2 and len(names) > 1:
        return f"{names[0]} and {names[1]}"
    others = count - 1
    return f"{names[0]} and {others} other{'' if others == 1 else 's'}"


def render_text(text: str, actors: list[dict], count: int) -> str:
    """The text as shown: a group's "{actors}" filled in (only at the start: the rest may be a
    user's own words)."""
    if not text.startswith(ACTORS):
        return text
    return actors_phrase(actors, count) + text[len(ACTORS):]


def actor_list(notification) -> list[dict]:
    """Up to 3 most recent actors, newest first: what groups.attach_actors found, else the one actor."""
    actors = getattr(notification, "actor_list", None)
    return list(actors) if actors else [actor_dict(notification.actor)]


def notification_message(notification, unread_count: int, unseen_count: int | None = None) -> dict:
    """A new or bumped notification (same `id`, higher `seq`) or one whose group changed (same
    `id` and `seq`): clients replace an item they have by id."""
    actors = actor_list(notification)
    count = getattr(notification, "actor_count", 1) or 1
    return {
        "v": ENVELOPE_VERSION,
        "type": "notification",
        "seq": notification.seq,
        "id": notification.pk,
        "kind": notification.kind,
        "actor": actors[0],
        "actors": actors,
        "count": count,
        "text": render_text(notification.text, actors, count),
        "url": notification.url,
        "created_at": notification.created_at.isoformat(),
        "read": bool(getattr(notification, "read", False)),
        "unread_count": unread_count,
        "unseen_count": unread_count if unseen_count is None else unseen_count,
    }


def seen_message(*, last_seq: int, unseen_count: int) -> dict:
    """Sent when the user opens the bell, so every open tab clears its badge."""
    return {"v": ENVELOPE_VERSION, "type": "seen", "seq": last_seq, "unseen_count": unseen_count}


def read_message(*, last_seq: int, unread_count: int, ids: list[int] | None, unseen_count: int | None = None) -> dict:
    """Sent when notifications are marked read, so every open tab updates its badge.

    `ids` lists what was marked read; None means "all of them".
    """
    return {
        "v": ENVELOPE_VERSION,
        "type": "read",
        "seq": last_seq,
        "ids": ids,
        "all": ids is None,
        "unread_count": unread_count,
        **({} if unseen_count is None else {"unseen_count": unseen_count}),
    }


def unread_message(*, last_seq: int, unread_count: int, ids: list[int], unseen_count: int) -> dict:
    """Sent when notifications are marked unread again, so every open tab shows them unread and
    updates its badge (the counterpart of `read`)."""
    return {"v": ENVELOPE_VERSION, "type": "unread", "seq": last_seq, "ids": ids,
            "unread_count": unread_count, "unseen_count": unseen_count}


def removed_message(*, ids: list[int], last_seq: int, unread_count: int, unseen_count: int) -> dict:
    """Sent when items went away (the last like of a group was taken back): clients drop them."""
    return {"v": ENVELOPE_VERSION, "type": "removed", "seq": last_seq, "ids": ids,
            "unread_count": unread_count, "unseen_count": unseen_count}


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
