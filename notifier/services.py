"""Writes to notifications and to the per-user state, always together, always in one transaction.

One lock order everywhere: whatever the caller locked first (the feed locks the post or comment a
write is about), then every NotificationState row the transaction will touch, once, in ascending
user id, then notification rows. send() takes all the recipients of all its notices before it
writes any of them, so "comment" + "mention" + "reply" from one comment lock in one ascending
sweep, never three interleaved ones. That keeps counts exact under concurrency and leaves no cycle
for a deadlock between comments, fan-out chunks, deletes and "mark all read".

The writes are set-based: per chunk of recipients, one UPDATE of their state rows (which also
skips those who already have the event: the dedupe key), one INSERT … SELECT of their
notifications straight from those rows (no model object per recipient), and one INSERT of the
owed pushes from the ids that INSERT returned.
"""
import json
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import Notice, delivery
from .models import Kind, Notification, NotificationState, PendingPush
from .sql import among, table

# Recipients handled per statement: bounds each statement's rows, locks and returned data.
CHUNK_SIZE = 500


def _user_id(user_or_id) -> int:
    return int(getattr(user_or_id, "pk", user_or_id))


def _chunks(items: list, size: int = CHUNK_SIZE):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def notify(kind: str, recipients: Iterable, **fields) -> list[delivery.Outgoing]:
    """Store a `kind` notification for each recipient and push each after commit; see send()."""
    return send([Notice(kind, recipients, **fields)])


def send(notices: Iterable[Notice]) -> list[delivery.Outgoing]:
    """Store every notice for its recipients in one transaction and push them after commit.

    Notices are applied in order, so when one person is in two of them their seqs follow that
    order. Returns what will be pushed (one item per stored notification).
    """
    planned = []
    for notice in notices:
        if notice.kind not in Kind.values:
            raise ValueError(f"unknown notification kind {notice.kind!r}")
        actor_id = _user_id(notice.actor) if notice.actor is not None else None
        ids = {_user_id(r) for r in notice.recipients}  # users, ids, or a queryset of ids
        ids.discard(actor_id)
        if ids:
            planned.append((notice, actor_id, sorted(ids)))
    if not planned:
        return []
    everyone = sorted({uid for _, _, ids in planned for uid in ids})
    # No savepoint: a failure here must undo the caller's write too (it is the same event).
    with transaction.atomic(savepoint=False):
        _lock_states(everyone)
        now = timezone.now()
        out: list[delivery.Outgoing] = []
        for notice, actor_id, ids in planned:
            for part in _chunks(ids):
                out += _store(notice, actor_id, part, now)
        delivery.deliver_on_commit(out)
    return out


def _lock_states(user_ids: list[int]) -> None:
    """Lock the state rows of these ascending user ids, in that order, creating any that is
    missing in the same ascending sweep.

    Every account gets its row when it is created (apps.create_state), but one made in bulk may
    have none. "Insert or lock" is one statement per batch of ids, in ascending order: on
    PostgreSQL `INSERT … ON CONFLICT DO UPDATE … WHERE false` inserts the missing rows and locks
    the existing ones without rewriting them (a lock-then-insert-the-rest would take the new rows'
    locks out of order, and two writers could deadlock). SQLite serialises writers: there an
    `INSERT … ON CONFLICT DO NOTHING` is enough.
    """
    state = table(NotificationState)
    with connection.cursor() as cursor:
        for part in _chunks(user_ids):
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"INSERT INTO {state} AS s (user_id, last_seq, unread_count, read_seq)"
                    f" SELECT u, 0, 0, 0 FROM unnest(%s::bigint[]) AS u ORDER BY u"
                    f" ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq WHERE false",
                    [part],
                )
            else:  # SQLite (the project's other database)
                cursor.execute(
                    f"INSERT INTO {state} (user_id, last_seq, unread_count, read_seq)"
                    f" SELECT value, 0, 0, 0 FROM json_each(%s) WHERE true ON CONFLICT (user_id) DO NOTHING",
                    [json.dumps(part)],
                )


def _store(notice: Notice, actor_id, user_ids: list[int], now) -> list[delivery.Outgoing]:
    """Three statements for up to CHUNK_SIZE recipients whose state rows this transaction holds:
    bump the seq and unread count of those who do not have this notice yet (dedupe key), insert
    their notifications numbered by the new seq, and insert the pushes owed for them."""
    state, notification = table(NotificationState), table(Notification)
    cond, cond_params = among("user_id", user_ids)
    fresh_only, key_params = "", []
    if notice.dedupe_key:
        fresh_only = (f" AND NOT EXISTS (SELECT 1 FROM {notification} n"
                      f" WHERE n.recipient_id = {state}.user_id AND n.dedupe_key = %s)")
        key_params = [notice.dedupe_key]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {state} SET last_seq = last_seq + 1, unread_count = unread_count + 1"
            f" WHERE {cond}{fresh_only} RETURNING user_id, unread_count",
            [*cond_params, *key_params],
        )
        unread = dict(cursor.fetchall())
        if not unread:
            return []
        cond, cond_params = among("s.user_id", sorted(unread))
        cursor.execute(
            f"INSERT INTO {notification} (recipient_id, actor_id, kind, seq, post_ref, comment_ref, dedupe_key,"
            f" text, url, created_at, read_at)"
            f" SELECT s.user_id, %s, %s, s.last_seq, %s, %s, %s, %s, %s, %s, NULL FROM {state} s"
            f" WHERE {cond} RETURNING id, recipient_id, seq",
            [actor_id, notice.kind, notice.post_ref, notice.comment_ref, notice.dedupe_key, notice.text[:300],
             notice.url, connection.ops.adapt_datetimefield_value(now), *cond_params],
        )
        rows = cursor.fetchall()
        _owe_pushes(cursor, rows, now + delivery.IN_FLIGHT_LEASE)
    text = notice.text[:300]
    return [
        delivery.Outgoing(pk=pk, recipient_id=uid, seq=seq, kind=notice.kind, actor=notice.actor, text=text,
                          url=notice.url, created_at=now, unread_count=unread[uid])
        for pk, uid, seq in rows
    ]


def _owe_pushes(cursor, rows: list[tuple], due) -> None:
    """Insert the PendingPush rows of just-inserted notifications (id, recipient_id, seq), from the
    values themselves: one statement, no lookup in the notification table."""
    push, due = table(PendingPush), connection.ops.adapt_datetimefield_value(due)
    columns = "(notification_id, recipient_id, attempts, due_at, last_error)"
    if connection.vendor == "postgresql":
        cursor.execute(
            f"INSERT INTO {push} {columns} SELECT n, r, 0, %s, '' FROM unnest(%s::bigint[], %s::bigint[]) AS t(n, r)",
            [due, [row[0] for row in rows], [row[1] for row in rows]],
        )
    else:  # SQLite
        cursor.execute(
            f"INSERT INTO {push} {columns} SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 0, %s, ''"
            f" FROM json_each(%s)",
            [due, json.dumps([row[:2] for row in rows])],
        )


def _unread_in(condition: Q):
    """Per-recipient count of unread notifications matching condition, as a correlated subquery
    on NotificationState (unread: above that state's read watermark and not read by itself)."""
    return Coalesce(
        Subquery(
            Notification.objects.filter(
                condition, recipient_id=OuterRef("user_id"), read_at__isnull=True, seq__gt=OuterRef("read_seq")
            )
            .order_by()
            .values("recipient_id")
            .annotate(n=Count("id"))
            .values("n")
        ),
        0,
    )


def _uncount(condition: Q) -> list[int]:
    """Lock the state rows of everyone with a notification matching condition (ascending id),
    and take the unread ones among those out of their unread counts (the caller deletes or reads
    them next, in the same transaction). Returns the user ids."""
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

    Called by the owner of those objects inside its delete transaction, after it has locked them,
    so nobody is left with a link to something that no longer exists, and unread counts drop by
    exactly what was removed. Returns the number of notifications removed.
    """
    condition = Q(post_ref__in=list(post_refs)) | Q(comment_ref__in=list(comment_refs))
    with transaction.atomic():
        if not _uncount(condition):
            return 0
        PendingPush.objects.filter(notification__in=Notification.objects.filter(condition).values("pk")).delete()
        deleted, _ = Notification.objects.filter(condition).delete()
    return deleted


def mark_read(user, notification_id: int) -> int:
    """Mark one of the user's notifications read; returns the new unread count.

    Raises Notification.DoesNotExist when it is not this user's (callers answer 404: nobody learns
    whether another user's notification exists).
    """
    uid = _user_id(user)
    with transaction.atomic():
        _lock_states([uid])
        state = NotificationState.objects.get(pk=uid)
        changed = Notification.objects.filter(
            pk=notification_id, recipient_id=uid, read_at__isnull=True, seq__gt=state.read_seq
        ).update(read_at=timezone.now())
        if not changed:
            if not Notification.objects.filter(pk=notification_id, recipient_id=uid).exists():
                raise Notification.DoesNotExist(notification_id)
            return state.unread_count
        unread = state.unread_count - 1
        NotificationState.objects.filter(pk=uid).update(unread_count=unread)
        delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=unread, ids=[notification_id])
    return unread


def mark_all_read(user) -> int:
    """Mark all of the user's notifications read by moving the read watermark: one row, whatever
    the backlog. Returns how many were unread."""
    uid = _user_id(user)
    with transaction.atomic():
        _lock_states([uid])
        state = NotificationState.objects.get(pk=uid)
        NotificationState.objects.filter(pk=uid).update(read_seq=state.last_seq, unread_count=0)
        delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=0, ids=None)
    return state.unread_count


def mark_read_where(condition: Q) -> int:
    """Mark every unread notification matching condition read, whoever it belongs to (admin)."""
    condition = Q(pk__in=Notification.objects.filter(condition).unread().values("pk"))
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
