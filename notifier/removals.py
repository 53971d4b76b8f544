"""Telling open tabs that notifications went, or changed in place, because what they were about was
deleted: a comment, a post, an account's writing, a like or a follow taken back.
notifier.services calls tell_on_commit() in the deleting transaction, with the items it is about
to delete and those it changed: a grouped item that lost someone (unlike, unfollow) or a post
(the followers' "new posts" item when one of its posts is deleted). Removed items go as one
`removed` message per recipient; changed ones as the item itself (a `notification` message with
the same id and seq, which tabs replace in place).

Few recipients (a comment's: the post's author, people mentioned, earlier commenters): one batch
of `removed` messages right after the commit, carrying the counts the deletion left. Many (a post
that fanned out to 100,000 followers): background tasks of CHUNK recipients each, enqueued in the
same transaction (on the database queue they exist exactly when the deletion commits), each
reading its recipients' counts when it runs. Best effort either way, as for every message that is
not stored: a tab that misses one keeps the item until it reloads, and opening it then says it is
gone (notifier.views.mark_read).
"""
import logging

from . import delivery, envelope
from .models import NotificationState
from .oncommit import after_commit
from .push.publisher import PublishError, get_publisher
from .push.batch import publish_all
from .taskqueue import background, enqueue
from .topics import user_topic

log = logging.getLogger(__name__)

INLINE = 200  # recipients told straight after the commit; more go to background tasks
CHUNK = 500  # recipients per background task


def tell_on_commit(removed: dict[int, list[int]], changed: dict[int, list[int]] | None = None) -> None:
    """`removed`: {recipient id: [notification ids]}, read before the deletion; `changed`: the
    same for items changed in place. The recipients' state rows are locked and already hold the
    counts the change leaves."""
    changed = changed or {}
    users = sorted(set(removed) | set(changed))
    if not users:
        return
    if len(users) <= INLINE:
        after_commit(_publish, _messages(removed, changed), True)
        return
    for start in range(0, len(users), CHUNK):
        enqueue(tell, [[uid, removed.get(uid, []), changed.get(uid, [])] for uid in users[start:start + CHUNK]])


@background
def tell(entries: list[list]) -> int:
    """A background chunk of tell_on_commit(): [[recipient id, [removed ids], [changed ids]], ...]
    (the changed ids may be absent: chunks enqueued before items could change)."""
    removed = {int(entry[0]): [int(i) for i in entry[1]] for entry in entries if entry[1]}
    changed = {int(entry[0]): [int(i) for i in entry[2]] for entry in entries if len(entry) > 2 and entry[2]}
    return _publish(_messages(removed, changed))


def _messages(removed: dict[int, list[int]], changed: dict[int, list[int]]) -> list[tuple[int, dict]]:
    """One `removed` message per recipient with removed items, then each changed item as it is
    now, with its recipient's counts (delivery.load: what a retried push would send)."""
    states = NotificationState.objects.filter(user_id__in=list(removed)).values_list(
        "user_id", "last_seq", "unread_count", "unseen_count") if removed else []
    messages = [
        (uid, envelope.removed_message(ids=sorted(removed[uid]), last_seq=last_seq, unread_count=unread,
                                       unseen_count=unseen))
        for uid, last_seq, unread, unseen in states
    ]
    ids = sorted({pk for pks in changed.values() for pk in pks})
    if ids:
        messages += [(item.recipient_id, delivery.item_message(item)) for item in delivery.load(ids)]
    return messages


def _publish(messages: list[tuple[int, dict]], urgent: bool = False) -> int:
    """One batch through the publisher's gate (rate, breaker); returns how many went. `urgent`
    after a request's commit: it waits briefly for the rate limit, not for a whole backlog."""
    batch = [(uid, user_topic(uid), envelope.encode(message)) for uid, message in messages]
    try:
        outcome = publish_all(get_publisher(), batch, urgent=urgent)
    except PublishError as exc:
        log.info("removed messages for %d users not sent: %s", len(batch), exc)
        return 0
    missed = len(batch) - len(outcome.delivered)
    if missed:
        log.info("removed messages: %d of %d not sent", missed, len(batch))
    return len(outcome.delivered)
