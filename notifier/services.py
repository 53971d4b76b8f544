"""Writes to notifications and to the per-user state, always together, always in one transaction.

Locking order is the same everywhere: the recipients' NotificationState rows first (ascending
user id), then notification rows. That keeps the unread count exact under concurrency and rules
out deadlocks between a fan-out and a "mark all read".
"""
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import delivery
from .models import Kind, Notification, NotificationState

# Recipients handled per statement: keeps IN lists well under database parameter limits.
CHUNK_SIZE = 500


def _user_id(user_or_id) -> int:
    return int(getattr(user_or_id, "pk", user_or_id))


def _chunks(items: list, size: int = CHUNK_SIZE):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lock_states(user_ids: list[int], dedupe_key: str | None = None) -> dict[int, NotificationState]:
    """Lock (creating where missing) the state rows of these users, in ascending id order.

    With a dedupe_key, each state also says (`has_key`) whether that user already has a
    notification with the key: the same query, so a retried event costs nothing extra.
    """
    locked = NotificationState.objects.select_for_update().order_by("user_id")
    if dedupe_key:
        locked = locked.annotate(
            has_key=Exists(Notification.objects.filter(recipient_id=OuterRef("user_id"), dedupe_key=dedupe_key))
        )
    states = {s.user_id: s for s in locked.filter(user_id__in=user_ids)}
    missing = [uid for uid in user_ids if uid not in states]
    if missing:
        NotificationState.objects.bulk_create(
            [NotificationState(user_id=uid) for uid in missing], ignore_conflicts=True
        )
        states.update({s.user_id: s for s in locked.filter(user_id__in=missing)})
    return states


def notify(
    kind: str,
    recipients: Iterable,
    *,
    actor,
    text: str,
    url: str,
    post_ref: int | None = None,
    comment_ref: int | None = None,
    dedupe_key: str | None = None,
) -> list[Notification]:
    """Store a `kind` notification for each recipient (users or ids) and push each after commit.

    - The actor is never notified of their own action, and each recipient gets one row.
    - With a `dedupe_key`, a recipient who already has a notification with that key gets no second
      one (retried fan-out, like → unlike → like).
    - Rows are bulk-inserted, and each recipient's seq and unread count move in the same
      transaction, so the bell never disagrees with the list.
    """
    if kind not in Kind.values:
        raise ValueError(f"unknown notification kind {kind!r}")
    actor_id = _user_id(actor) if actor is not None else None
    user_ids = sorted({_user_id(r) for r in recipients} - {actor_id})
    created: list[Notification] = []
    if not user_ids:
        return created
    fields = dict(
        actor=actor, kind=kind, text=text[:300], url=url, post_ref=post_ref,
        comment_ref=comment_ref, dedupe_key=dedupe_key,
    )
    # No savepoint: a failure here must undo the caller's write too (it is the same event).
    with transaction.atomic(savepoint=False):
        for chunk in _chunks(user_ids):
            created += _notify_chunk(chunk, fields)
        delivery.deliver_on_commit(created)
    return created


def _notify_chunk(user_ids: list[int], fields: dict) -> list[Notification]:
    states = _lock_states(user_ids, fields["dedupe_key"])
    user_ids = [uid for uid in user_ids if not getattr(states[uid], "has_key", False)]
    if not user_ids:
        return []
    NotificationState.objects.filter(user_id__in=user_ids).update(
        last_seq=F("last_seq") + 1, unread_count=F("unread_count") + 1
    )
    rows = []
    for uid in user_ids:
        row = Notification(recipient_id=uid, seq=states[uid].last_seq + 1, **fields)
        # The recipient's exact unread count including this row, for the push envelope.
        row.unread_count_after = states[uid].unread_count + 1
        rows.append(row)
    return Notification.objects.bulk_create(rows)


def _unread_in(condition: Q):
    """Per-recipient count of unread notifications matching condition, as a correlated subquery."""
    return Coalesce(
        Subquery(
            Notification.objects.filter(condition, recipient_id=OuterRef("user_id"), read_at__isnull=True)
            .order_by()
            .values("recipient_id")
            .annotate(n=Count("id"))
            .values("n")
        ),
        0,
    )


def _uncount(condition: Q) -> list[int]:
    """Lock the state rows of everyone with a notification matching condition, and take the
    unread ones among those out of their unread counts (the caller deletes or reads them next,
    in the same transaction). Returns the user ids."""
    recipients = Notification.objects.filter(condition).order_by().values("recipient_id").distinct()
    user_ids = list(
        NotificationState.objects.select_for_update()
        .filter(user_id__in=Subquery(recipients))
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    if user_ids:
        NotificationState.objects.filter(user_id__in=user_ids).update(
            unread_count=F("unread_count") - _unread_in(condition)
        )
    return user_ids


def withdraw(*, post_refs: Iterable[int] = (), comment_refs: Iterable[int] = ()) -> int:
    """Delete the notifications about these posts/comments (they are being deleted).

    Called by the owner of those objects inside its delete transaction, so nobody is left with a
    link to something that no longer exists, and unread counts drop by exactly what was removed.
    Returns the number of notifications removed.
    """
    condition = Q(post_ref__in=list(post_refs)) | Q(comment_ref__in=list(comment_refs))
    with transaction.atomic():
        if not _uncount(condition):
            return 0
        deleted, _ = Notification.objects.filter(condition).delete()
    return deleted


def mark_read(user, notification_id: int) -> int:
    """Mark one of the user's notifications read; returns the new unread count.

    Raises Notification.DoesNotExist when it is not this user's (callers answer 404: nobody learns
    whether another user's notification exists).
    """
    uid = _user_id(user)
    with transaction.atomic():
        state = _lock_states([uid])[uid]
        changed = Notification.objects.filter(pk=notification_id, recipient_id=uid, read_at__isnull=True).update(
            read_at=timezone.now()
        )
        if not changed:
            if not Notification.objects.filter(pk=notification_id, recipient_id=uid).exists():
                raise Notification.DoesNotExist(notification_id)
            return state.unread_count
        NotificationState.objects.filter(pk=uid).update(unread_count=F("unread_count") - 1)
        unread = state.unread_count - 1
        delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=unread, ids=[notification_id])
    return unread


def mark_all_read(user) -> int:
    """Mark all of the user's notifications read with one UPDATE; returns how many changed."""
    uid = _user_id(user)
    with transaction.atomic():
        state = _lock_states([uid])[uid]
        changed = Notification.objects.filter(recipient_id=uid, read_at__isnull=True).update(read_at=timezone.now())
        NotificationState.objects.filter(pk=uid).update(unread_count=0)
        delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=0, ids=None)
    return changed


def mark_read_where(condition: Q) -> int:
    """Mark every notification matching condition read, whoever it belongs to (admin action)."""
    condition &= Q(read_at__isnull=True)
    with transaction.atomic():
        user_ids = _uncount(condition)
        if not user_ids:
            return 0
        changed = Notification.objects.filter(condition).update(read_at=timezone.now())
        for state in NotificationState.objects.filter(user_id__in=user_ids):
            delivery.publish_read_on_commit(
                state.user_id, last_seq=state.last_seq, unread_count=state.unread_count, ids=[]
            )
    return changed


def unread_count(user) -> int:
    """The exact unread count: one primary-key read, no COUNT(*)."""
    if not getattr(user, "is_authenticated", True):
        return 0
    value = NotificationState.objects.filter(pk=_user_id(user)).values_list("unread_count", flat=True).first()
    return value or 0
