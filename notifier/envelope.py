"""The JSON messages pushed to clients (contract: README "Topics and messages").

Versioned (`"v": 1`) so clients can ignore what they do not understand. Text is plain: clients
insert it with textContent, never as HTML.
"""
import json

ENVELOPE_VERSION = 1


def actor_dict(actor) -> dict:
    if actor is None:
        return {"username": None, "display_name": "Someone"}
    return {
        "username": actor.get_username(),
        "display_name": getattr(actor, "display_name", "") or actor.get_username(),
    }


def notification_message(notification, unread_count: int) -> dict:
    return {
        "v": ENVELOPE_VERSION,
        "type": "notification",
        "seq": notification.seq,
        "id": notification.pk,
        "kind": notification.kind,
        "actor": actor_dict(notification.actor),
        "text": notification.text,
        "url": notification.url,
        "created_at": notification.created_at.isoformat(),
        "unread_count": unread_count,
    }


def read_message(*, last_seq: int, unread_count: int, ids: list[int] | None) -> dict:
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
    }


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
