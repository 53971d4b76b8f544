"""What a device receives: the contract the service worker reads, and how long it may wait.

The payload is the live push's `notification` message (notifier.envelope.notification_message)
for the same notification, trimmed for a push service's 4 KB limit:

    {"v": 1, "type": "notification", "id": N, "seq": N, "kind": "...", "text": "...",
     "url": "/posts/1/", "actor": {"username": ..., "display_name": ..., "avatar": {"small": URL} | null},
     "count": N, "unread_count": N, "unseen_count": N, "created_at": "ISO-8601"}

(no `actors` list and no `read`; `actor.avatar` is only the small picture). Encrypted with
aes128gcm in one record it must stay within MAX_ENCRYPTED bytes: past that the avatar goes, then
the text is shortened (with "…").

TTL and Urgency (RFC 8030 §5.2, §5.3) per kind: what someone said to or about you (mention,
reply, comment) is worth a day and wakes a phone ("high" / "normal"); what is only activity
(likes, new posts, follows) is "low" and goes stale in hours: a push service may drop it rather
than wake a sleeping device or deliver it the next morning.
"""
import json

from .. import envelope
from ..models import Kind

HOUR = 3600
# kind: (TTL seconds, Urgency)
POLICY = {
    Kind.MENTION: (24 * HOUR, "high"),
    Kind.REPLY: (24 * HOUR, "high"),
    Kind.COMMENT: (24 * HOUR, "normal"),
    Kind.FOLLOW: (12 * HOUR, "low"),
    Kind.LIKE: (4 * HOUR, "low"),
    Kind.NEW_POST: (4 * HOUR, "low"),
}
DEFAULT_POLICY = (12 * HOUR, "normal")

# Push services accept 4096 bytes of encrypted body. aes128gcm in one record adds a header of
# 16 (salt) + 4 (record size) + 1 + 65 (the sender's key) bytes, a delimiter byte and a 16-byte tag.
MAX_ENCRYPTED = 4096
OVERHEAD = 16 + 4 + 1 + 65 + 1 + 16
MAX_PLAINTEXT = MAX_ENCRYPTED - OVERHEAD


def ttl_and_urgency(kind: str) -> tuple[int, str]:
    return POLICY.get(kind, DEFAULT_POLICY)


def encrypted_size(plaintext_bytes: int) -> int:
    """The body's size after encryption (single aes128gcm record; see sender.encrypt)."""
    return plaintext_bytes + OVERHEAD


def message(item) -> dict:
    """The payload for one notification (a delivery.Outgoing), before trimming."""
    full = envelope.notification_message(item, unread_count=item.unread_count, unseen_count=item.unseen_count)
    actor = dict(full["actor"])
    avatar = actor.get("avatar")
    small = avatar.get("small") if isinstance(avatar, dict) else None
    actor["avatar"] = {"small": small} if small else None
    fields = ("v", "type", "id", "seq", "kind", "text", "url", "count", "unread_count", "unseen_count", "created_at")
    out = {key: full[key] for key in fields}
    out["actor"] = actor
    return out


def encode(message_: dict) -> bytes:
    """The message as compact UTF-8 JSON within MAX_PLAINTEXT bytes: without the avatar if need
    be, then with the text shortened."""
    data = _dump(message_)
    if len(data) <= MAX_PLAINTEXT:
        return data
    message_ = {**message_, "actor": {**(message_.get("actor") or {}), "avatar": None}}
    data = _dump(message_)
    text = message_.get("text") or ""
    while len(data) > MAX_PLAINTEXT and text:
        # Cut by what is over (in bytes, so at least that many characters), never mid-character.
        over = len(data) - MAX_PLAINTEXT
        text = text[: max(0, len(text) - over - 1)]
        message_ = {**message_, "text": text + "…"}
        data = _dump(message_)
    if len(data) > MAX_PLAINTEXT:  # only the other fields left: names and URL are bounded by the models
        raise ValueError("a Web Push payload cannot be made to fit")
    return data


def _dump(message_: dict) -> bytes:
    return json.dumps(message_, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
