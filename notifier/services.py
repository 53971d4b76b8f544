"""Writes to notifications and to the per-user state, always together, always in one transaction.

One lock order everywhere: whatever the caller locked first (the feed locks the post or comment a
write is about), then every NotificationState row the transaction will touch, once, in ascending
user id, then notification rows. send() takes all the recipients of all its notices before it
writes any of them, so "comment" + "mention" + "reply" from one comment lock in one ascending
sweep, never three interleaved ones. That keeps counts exact under concurrency and leaves no cycle
for a deadlock between comments, fan-out chunks, deletes and "mark all read".

The writes are set-based: per chunk of recipients, one UPDATE of their state rows (which also
skips those who already have the event, and those who muted its kind or its post), one INSERT …
SELECT of their notifications straight from those rows (no model object per recipient), and one
INSERT of the owed pushes from the ids that INSERT returned. A grouped kind's INSERT is an upsert
on the group's key (it bumps the recipient's item for that group when there is one), and its
UPDATE counts a recipient's item as newly unread / unseen only when it was not already.

Deleting a post keeps the followers' "new posts" item when it stands for other posts too
(withdraw_post): a few statements for all of them, keyed on the post and on the recipients' state
rows, which are locked first like every write's.
"""
import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Concat, Left, Length
from django.utils import timezone

from . import Notice, channels, delivery, envelope, groups, removals
from .envelope import actor_dict
from .models import (GROUPED, MEMBERS, NEWEST, Kind, MutedPost, Notification, NotificationActor, NotificationEvent,
                     NotificationState, PendingPush, PendingWebPush, WebPushSubscription)
from .sql import among, int_array, table
from .webpush import delivery as web_push
from .webpush import enabled as web_push_enabled

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
        if bool(notice.group) != (notice.kind in GROUPED):
            raise ValueError(f"{notice.kind!r} notices {'need' if notice.kind in GROUPED else 'take no'} group")
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
        owed_web: list[int] = []
        for notice, actor_id, ids in planned:
            event_id, created_at, made = _event(notice, actor_id, now)
            stored = []
            for part in _chunks(ids):
                stored += _store(notice, actor_id, event_id, created_at, part, owed_web)
            if made and not stored:  # everyone had it or muted it: nothing points at the event
                NotificationEvent.objects.filter(pk=event_id).delete()
            out += stored
        delivery.deliver_on_commit(out)
        web_push.owe_on_commit(owed_web)
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
                    f"INSERT INTO {state} AS s (user_id, last_seq, unread_count, read_seq, seen_seq, unseen_count,"
                    f" muted_kinds) SELECT u, 0, 0, 0, 0, 0, '' FROM unnest(%s::bigint[]) AS u ORDER BY u"
                    f" ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq WHERE false",
                    [int_array(part)],
                )
            else:  # SQLite (the project's other database)
                cursor.execute(
                    f"INSERT INTO {state} (user_id, last_seq, unread_count, read_seq, seen_seq, unseen_count, muted_kinds)"
                    f" SELECT value, 0, 0, 0, 0, 0, '' FROM json_each(%s) WHERE true ON CONFLICT (user_id) DO NOTHING",
                    [json.dumps(part)],
                )


def _not_muted(notice: Notice) -> tuple[str, list]:
    """SQL (on the state table) that keeps only recipients who have not muted this notice."""
    state, muted = table(NotificationState), table(MutedPost)
    sql = f" AND (',' || {state}.muted_kinds || ',') NOT LIKE %s"
    params: list = [f"%,{notice.kind},%"]
    if notice.post_ref is not None:
        sql += f" AND NOT EXISTS (SELECT 1 FROM {muted} m WHERE m.user_id = {state}.user_id AND m.post_ref = %s)"
        params.append(notice.post_ref)
    return sql, params


def _event(notice: Notice, actor_id, now) -> tuple[int, object, bool]:
    """The event row this notice's recipients will point at: its id, its time, and whether it
    was made now.

    A post's fan-out, whose chunks run as separate tasks (a NEWEST group), shares one event: every
    chunk finds the one the first stored. Anything else is made afresh, a like or a follow being
    news each time (the group shows the newest one's time); a retried comment's new event goes
    again when everyone already had it (send), so the comment's path costs no lookup."""
    fields = dict(kind=notice.kind, actor_id=actor_id, post_ref=notice.post_ref, comment_ref=notice.comment_ref,
                  dedupe_key=notice.dedupe_key, text=_text(notice), url=notice.url)
    if notice.group and GROUPED[notice.kind] == NEWEST and notice.post_ref is not None:
        return _find_or_make_event(fields, now)
    return NotificationEvent.objects.create(created_at=now, **fields).pk, now, True


def _find_or_make_event(fields: dict, created_at) -> tuple[int, object, bool]:
    """The newest event with exactly these fields, else a new one made `created_at`: (its id, its
    time, whether it was made now). `fields` may hold created_at itself (then it is matched too)."""
    found = NotificationEvent.objects.filter(**fields).order_by("-pk").values_list("pk", "created_at").first()
    if found is not None:
        return *found, False
    return NotificationEvent.objects.create(**{"created_at": created_at, **fields}).pk, created_at, True


def _store(notice: Notice, actor_id, event_id: int, now, user_ids: list[int], owed_web: list[int]) -> list[delivery.Outgoing]:
    """Two statements for up to CHUNK_SIZE recipients whose state rows this transaction holds:
    bump the seq and counts of those who do not have this activity yet and have not muted it,
    then insert (or, for a grouped kind, upsert) their notifications numbered by the new seq
    together with the pushes owed (plus, for a MEMBERS group, the actor's member rows, and the Web
    Pushes owed to their devices, whose ids go to `owed_web`)."""
    state, notification = table(NotificationState), table(Notification)
    cond, cond_params = among(f"{state}.user_id", user_ids)
    muted, muted_params = _not_muted(notice)
    plan = _grouping(notice, now) if notice.group else _single(notice)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {state} SET last_seq = last_seq + 1, {plan.counting}"
            f" WHERE {cond}{muted}{plan.skip} RETURNING user_id, unread_count, unseen_count",
            [*plan.counting_params, *cond_params, *muted_params, *plan.skip_params],
        )
        counts = {uid: (unread, unseen) for uid, unread, unseen in cursor.fetchall()}
        if not counts:
            return []
        cond, cond_params = among("s.user_id", sorted(counts))
        rows = _insert_owing_pushes(
            cursor,
            f"INSERT INTO {notification} (recipient_id, seq, event_id, kind, actor_count, dedupe_key, read_at)"
            f" SELECT s.user_id, s.last_seq, %s, %s, 1, %s, NULL FROM {state} s"
            f" WHERE {cond}{plan.on_conflict} RETURNING id, recipient_id, seq, actor_count",
            [event_id, notice.kind, plan.key, *cond_params],
            now + delivery.IN_FLIGHT_LEASE,
        )
        if plan.members and actor_id is not None:
            _add_members(cursor, [row[0] for row in rows], actor_id, event_id, now)
        if rows and web_push_enabled():
            owed_web += _owe_web_pushes(cursor, notice.kind, [row[:2] for row in rows], now + web_push.IN_FLIGHT_LEASE)
    recent = groups.recent_actors([pk for pk, _, _, count in rows if plan.members and count > 1])
    # What every recipient's push shares is made once (one actor tuple: delivery encodes the
    # shared part of the message once for all the items that hold it).
    kind, actor, text, url, actors = notice.kind, notice.actor, _text(notice), notice.url, (actor_dict(notice.actor),)
    return [delivery.Outgoing(pk, uid, seq, kind, actor, text, url, now, counts[uid][0], counts[uid][1], count,
                              tuple(recent[pk]) if pk in recent else actors)
            for pk, uid, seq, count in rows]


@dataclass(frozen=True)
class _Plan:
    """The parts of _store's statements that differ between single and grouped notifications."""

    key: str | None  # the row's dedupe_key
    counting: str  # SET clause for unread_count and unseen_count
    counting_params: list
    skip: str  # who already has this activity
    skip_params: list
    on_conflict: str = ""
    members: bool = False


def _single(notice: Notice) -> _Plan:
    """A new row per recipient, counted unread and unseen; skipped for those who have a
    notification of an event with the notice's dedupe key (a retried comment).

    As a NOT IN, the recipients of those events are read once per statement (the event index;
    a hashed subplan), not probed once per recipient. It is exact: every writer locks its
    recipients' state rows before this statement, so the rows of a writer that went first are
    committed and visible to it."""
    state, notification, event = table(NotificationState), table(Notification), table(NotificationEvent)
    skip, skip_params = "", []
    if notice.dedupe_key:
        skip = (f" AND {state}.user_id NOT IN (SELECT n.recipient_id FROM {notification} n"
                f" WHERE n.event_id IN (SELECT e.id FROM {event} e WHERE e.dedupe_key = %s))")
        skip_params = [notice.dedupe_key]
    return _Plan(None, "unread_count = unread_count + 1, unseen_count = unseen_count + 1", [],
                 skip, skip_params)


def _grouping(notice: Notice, now) -> _Plan:
    """The recipient's item for the group in this window, bumped or started.

    Skipped where the group already has this activity (MEMBERS: the actor is in it; NEWEST: it
    already shows this post or a newer one). Counted unread (unseen) only when the item was not
    unread (unseen) already. The INSERT is an upsert on the group's key: an existing item takes
    the new seq, the newest actor and text, and becomes unread again; its count gains the new
    member (MEMBERS) or the new post (NEWEST: only a newer post gets here, once)."""
    state, notification, members = table(NotificationState), table(Notification), table(NotificationActor)
    event = table(NotificationEvent)
    key = groups.group_key(notice.group, now)
    by_members = GROUPED[notice.kind] == MEMBERS
    group = f"SELECT 1 FROM {notification} g WHERE g.recipient_id = {state}.user_id AND g.dedupe_key = %s"
    # The recipient's item, as a scalar subquery: one probe of the (recipient, dedupe_key) unique
    # index per recipient. (As a NOT EXISTS on a column of the item, the planner may turn it into
    # an anti-join that scans every earlier item of the post for each recipient: quadratic in a
    # fan-out, 10 s instead of 0.6 s for 10,000 followers.)
    item = f"(SELECT g.{{}} FROM {notification} g WHERE g.recipient_id = {state}.user_id AND g.dedupe_key = %s)"
    if by_members:
        skip = (f" AND NOT EXISTS (SELECT 1 FROM {members} m WHERE m.notification_id = {item.format('id')}"
                f" AND m.actor_id = %s)")
        skip_params = [key, _user_id(notice.actor) if notice.actor is not None else None]
    else:
        shown = (f"(SELECT e.post_ref FROM {notification} g JOIN {event} e ON e.id = g.event_id"
                 f" WHERE g.recipient_id = {state}.user_id AND g.dedupe_key = %s)")
        skip, skip_params = f" AND COALESCE({shown}, 0) < %s", [key, notice.post_ref]
    counting = (
        f"unread_count = unread_count + CASE WHEN EXISTS ({group} AND g.seq > {state}.read_seq"
        f" AND g.read_at IS NULL) THEN 0 ELSE 1 END,"
        f" unseen_count = unseen_count + CASE WHEN EXISTS ({group} AND g.seq > {state}.seen_seq) THEN 0 ELSE 1 END"
    )
    on_conflict = (
        f" ON CONFLICT (recipient_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO UPDATE SET seq = excluded.seq,"
        f" event_id = excluded.event_id, read_at = NULL, actor_count = {notification}.actor_count + 1"
    )
    return _Plan(key, counting, [key, key], skip, skip_params, on_conflict, by_members)


def _text(notice: Notice) -> str:
    return groups.fixed_text(notice.kind, notice.text, notice.actor)


def _add_members(cursor, notification_ids: list[int], actor_id: int, event_id: int, now) -> None:
    members, now = table(NotificationActor), connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        cursor.execute(
            f"INSERT INTO {members} (notification_id, actor_id, event_id, created_at)"
            f" SELECT n, %s, %s, %s FROM unnest(%s::bigint[]) n ON CONFLICT (notification_id, actor_id) DO NOTHING",
            [actor_id, event_id, now, int_array(notification_ids)],
        )
    else:  # SQLite
        cursor.execute(
            f"INSERT INTO {members} (notification_id, actor_id, event_id, created_at) SELECT value, %s, %s, %s"
            f" FROM json_each(%s) WHERE true ON CONFLICT (notification_id, actor_id) DO NOTHING",
            [actor_id, event_id, now, json.dumps(notification_ids)],
        )


def _insert_owing_pushes(cursor, insert: str, params: list, due) -> list[tuple]:
    """Run `insert` (notifications, RETURNING id, recipient_id, seq, actor_count) and insert the
    PendingPush row of each row it wrote; returns those rows.

    On PostgreSQL one statement: the outbox rows come from the INSERT's own RETURNING (a data-
    modifying WITH), so the ids make no round trip through Python and back. On SQLite a second
    statement takes them as JSON. A bumped group may still owe its previous push: that row
    becomes the new push, due afresh."""
    push, due = table(PendingPush), connection.ops.adapt_datetimefield_value(due)
    columns = "(notification_id, recipient_id, attempts, due_at, last_error)"
    upsert = (" ON CONFLICT (notification_id) DO UPDATE SET attempts = 0, due_at = excluded.due_at,"
              " last_error = ''")
    if connection.vendor == "postgresql":
        cursor.execute(
            f"WITH n AS ({insert}), p AS (INSERT INTO {push} {columns} SELECT id, recipient_id, 0, %s, '' FROM n"
            f"{upsert}) SELECT id, recipient_id, seq, actor_count FROM n",
            [*params, due],
        )
        return cursor.fetchall()
    cursor.execute(insert, params)  # SQLite
    rows = cursor.fetchall()
    if rows:
        cursor.execute(
            f"INSERT INTO {push} {columns} SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 0, %s, ''"
            f" FROM json_each(%s) WHERE true" + upsert,
            [due, json.dumps([row[:2] for row in rows])],
        )
    return rows


def _owe_web_pushes(cursor, kind: str, rows: list[tuple], due) -> list[int]:
    """Insert the PendingWebPush rows of just-written notifications (id, recipient_id, ...): one
    per device of each recipient whose state row has `kind` on for Web Push, in one INSERT …
    SELECT joining the values with the subscriptions and the (locked) state rows. A bumped group
    owes its push again: the row that may still be there is reset, due afresh. Returns the rows' ids."""
    push, subs, state = table(PendingWebPush), table(WebPushSubscription), table(NotificationState)
    due = connection.ops.adapt_datetimefield_value(due)
    on = channels.on_sql(channels.WEB_PUSH, "st")
    if connection.vendor == "postgresql":
        values, params = "unnest(%s::bigint[], %s::bigint[]) AS t(n, r)", [int_array(r[0] for r in rows),
                                                                             int_array(r[1] for r in rows)]
    else:  # SQLite
        values = "(SELECT json_extract(value, '$[0]') AS n, json_extract(value, '$[1]') AS r FROM json_each(%s)) t"
        params = [json.dumps([list(r[:2]) for r in rows])]
    cursor.execute(
        f"INSERT INTO {push} (notification_id, subscription_id, attempts, due_at, last_error)"
        f" SELECT t.n, s.id, 0, %s, '' FROM {values} JOIN {subs} s ON s.user_id = t.r"
        f" JOIN {state} st ON st.user_id = t.r WHERE {on}"
        f" ON CONFLICT (notification_id, subscription_id) DO UPDATE SET attempts = 0, due_at = excluded.due_at,"
        f" last_attempt_at = NULL, last_error = '' RETURNING id",
        [due, *params, kind],
    )
    return [row[0] for row in cursor.fetchall()]


def _count_in(condition: Q, **above):
    """Per-recipient count of notifications matching condition and `above` (seq above a state
    column), as a correlated subquery on NotificationState."""
    return Coalesce(
        Subquery(
            Notification.objects.filter(condition, recipient_id=OuterRef("user_id"), **above)
            .order_by()
            .values("recipient_id")
            .annotate(n=Count("id"))
            .values("n")
        ),
        0,
    )


def _uncount(condition: Q, *, unseen: bool = True) -> list[int]:
    """Lock the state rows of everyone with a notification matching condition (ascending id),
    and take the unread ones among those out of their unread counts, and the unseen ones out of
    their unseen counts unless `unseen` is False (the caller deletes or reads them next, in the
    same transaction). Returns the user ids."""
    recipients = Notification.objects.filter(condition).order_by().values("recipient_id").distinct()
    user_ids = list(
        NotificationState.objects.select_for_update()
        .filter(user_id__in=Subquery(recipients))
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )
    if user_ids:
        changes = {"unread_count": F("unread_count") - _count_in(condition, read_at__isnull=True, seq__gt=OuterRef("read_seq"))}
        if unseen:
            changes["unseen_count"] = F("unseen_count") - _count_in(condition, seq__gt=OuterRef("seen_seq"))
        NotificationState.objects.filter(user_id__in=user_ids).update(**changes)
    return user_ids


def withdraw(*, post_refs: Iterable[int] = (), comment_refs: Iterable[int] = ()) -> int:
    """Delete the notifications about these posts/comments (they are being deleted).

    Called by the owner of those objects inside its delete transaction, after it has locked them,
    so nobody is left with a link to something that no longer exists, and unread counts drop by
    exactly what was removed. Each recipient's open tabs are told after the commit (a `removed`
    message: notifier.removals). Returns the number of notifications removed.
    """
    condition = Q(event__in=_events_about(post_refs, comment_refs))
    with transaction.atomic():
        removed = _remove(condition)
        removals.tell_on_commit(removed)
    return sum(len(ids) for ids in removed.values())


def _events_about(post_refs: Iterable[int] = (), comment_refs: Iterable[int] = ()):
    """The ids of the events about these posts (their comments' too) or comments, as a subquery."""
    return NotificationEvent.objects.filter(
        Q(post_ref__in=list(post_refs)) | Q(comment_ref__in=list(comment_refs))).values("pk")


def _remove(condition: Q) -> dict[int, list[int]]:
    """Delete the notifications matching condition with their share of the counts and their owed
    pushes; returns {recipient id: [notification ids]}."""
    if not _uncount(condition):
        return {}
    removed: dict[int, list[int]] = {}
    for recipient_id, pk in Notification.objects.filter(condition).values_list("recipient_id", "pk"):
        removed.setdefault(recipient_id, []).append(pk)
    ids = [pk for pks in removed.values() for pk in pks]
    events = set(Notification.objects.filter(pk__in=ids).values_list("event_id", flat=True))
    PendingPush.objects.filter(notification_id__in=ids).delete()
    PendingWebPush.objects.filter(notification_id__in=ids).delete()
    Notification.objects.filter(pk__in=ids).delete()
    _forget_events(events)
    return removed


def _forget_events(event_ids) -> None:
    """Delete those of these events that no notification and no group member points at any more."""
    if event_ids:
        NotificationEvent.objects.filter(pk__in=list(event_ids)).exclude(
            pk__in=Notification.objects.filter(event_id__in=list(event_ids)).values("event_id")).exclude(
            pk__in=NotificationActor.objects.filter(event_id__in=list(event_ids)).values("event_id")).delete()


def _about(post_ref: int | None, comment_ref: int | None):
    """Events about a comment, or about a post itself (not its comments)."""
    if comment_ref is not None:
        return NotificationEvent.objects.filter(comment_ref=comment_ref)
    return NotificationEvent.objects.filter(post_ref=post_ref, comment_ref__isnull=True)


def revise_excerpt(old: str, new: str, *, post_ref: int | None = None, comment_ref: int | None = None) -> int:
    """A post or comment was edited: the notifications about it that quote its old excerpt
    (“…” at the end of their text) quote the new one. Rewritten in the edit's transaction rather
    than rendered from the object when read, so reading the inbox stays the same few queries and
    notifier still knows nothing of feed's objects: one row per event, however many recipients
    it has. Counts and seqs do not change: an edit is not news. Returns how many events were
    rewritten."""
    old_quoted, new_quoted = f"“{old}”", f"“{new}”"
    if old_quoted == new_quoted:
        return 0
    return _about(post_ref, comment_ref).filter(text__endswith=old_quoted).update(
        text=Left(Concat(Left("text", Length("text") - len(old_quoted)), Value(new_quoted)), groups.TEXT_LENGTH),
    )


def told(*, post_ref: int | None = None, comment_ref: int | None = None) -> set[int]:
    """Who has a notification about this comment, or about this post itself: an edit that adds
    a mention tells nobody in here a second time."""
    events = _about(post_ref, comment_ref).values("pk")
    return set(Notification.objects.filter(event__in=events).order_by().values_list("recipient_id", flat=True))


def withdraw_post(post_ref: int, *, kind: str, group: str, actor, posted_at, earlier: Iterable[groups.Shown],
                  later, untold: Iterable[int] = ()) -> int:
    """withdraw() for one deleted post, except the recipients' `kind` item for `group` (a NEWEST
    group: the followers' "new posts" item for the post's author) where it stands for other posts
    too: it loses this one from its count, and where this post was the one it showed it moves
    back to the newest of `earlier` (the author's older posts that still exist, newest first)
    that the recipient was told of, keeping its id, seq and read state. It goes, with its share
    of the counts, only when this was its last post. Open tabs get the changed item in place or
    its removal (notifier.removals). Returns how many notifications went.

    `posted_at` places the post in its window (its fan-out's); `later`: a queryset of the ids of
    the author's newer posts (where items that counted this post now point); `untold`: users the
    post's fan-out did not tell (it mentioned them; they followed after it), whose item never
    counted it. The caller holds the post's lock and makes deletions of one author's posts take
    turns, so the posts named here stay as read; recipients' state rows are locked next, in one
    ascending sweep, before any notification row (a fan-out of a newer post meanwhile either
    commits first, and its items are found where it moved them, or waits)."""
    key = groups.group_key(group, posted_at)
    about = Q(event__in=_events_about([post_ref]))
    untold = sorted(set(untold))
    counted = (Notification.objects.filter(kind=kind, dedupe_key=key, event__post_ref__in=later, actor_count__gt=1)
               .exclude(recipient_id__in=untold))
    with transaction.atomic():
        recipients = set(Notification.objects.filter(about).order_by().values_list("recipient_id", flat=True).distinct())
        recipients.update(counted.order_by().values_list("recipient_id", flat=True).distinct())
        if not recipients:
            return 0
        recipients = sorted(recipients)
        _lock_states(recipients)
        changed: dict[int, list[int]] = {}
        for pk, uid in _count_out(recipients, key, post_ref, untold) + _move_back(
                recipients, kind, post_ref, list(earlier), actor):
            changed.setdefault(uid, []).append(pk)
        removed = _remove(about)
        removals.tell_on_commit(removed, changed)
    return sum(len(ids) for ids in removed.values())


def _count_out(recipients: list[int], key: str, post_ref: int, untold: list[int]) -> list[tuple[int, int]]:
    """The items of `key` that moved on to a newer post after counting this one lose one from
    their count (one probe of the (recipient, dedupe_key) index per recipient). Returns their
    (id, recipient id)."""
    notification, event = table(Notification), table(NotificationEvent)
    mine, params = among("recipient_id", recipients)
    sql = (f"UPDATE {notification} SET actor_count = actor_count - 1 WHERE {mine} AND dedupe_key = %s"
           f" AND (SELECT e.post_ref FROM {event} e WHERE e.id = {notification}.event_id) > %s AND actor_count > 1")
    params += [key, post_ref]
    if untold:
        skip, skip_params = among("recipient_id", untold)
        sql, params = f"{sql} AND NOT ({skip})", params + skip_params
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING id, recipient_id", params)
        return cursor.fetchall()


def _move_back(recipients: list[int], kind: str, post_ref: int, earlier: list[groups.Shown],
               actor) -> list[tuple[int, int]]:
    """Items showing this post that stand for others too now show the newest of `earlier` that
    their recipient was told of: one UPDATE per post tried, newest first (usually just one: only
    a post that mentioned someone passes them on to the next). Their count loses one; seq, read
    state and everything else stay. Returns their (id, recipient id); what is left goes."""
    notification, event = table(Notification), table(NotificationEvent)
    mine, mine_params = among("recipient_id", recipients)
    moved: list[tuple[int, int]] = []
    with connection.cursor() as cursor:
        for shown in earlier:
            sql = (f"UPDATE {notification} SET event_id = %s, actor_count = actor_count - 1"
                   f" WHERE event_id IN (SELECT e.id FROM {event} e WHERE e.post_ref = %s) AND kind = %s"
                   f" AND actor_count > 1 AND {mine}")
            params = [_shown_event(kind, shown, actor), post_ref, kind, *mine_params]
            if shown.untold:
                skip, skip_params = among("recipient_id", sorted(shown.untold))
                sql, params = f"{sql} AND NOT ({skip})", params + skip_params
            cursor.execute(f"{sql} RETURNING id, recipient_id", params)
            moved += cursor.fetchall()
            if not shown.untold:  # everyone was told of this one: nobody is left to move
                break
    return moved


def _shown_event(kind: str, shown: groups.Shown, actor) -> int:
    """The event an item moving back to an earlier post shows: what feed says of that post, dated
    when it was posted. One for every item that moves (made once, then found)."""
    fields = dict(kind=kind, post_ref=shown.post_ref, comment_ref=None, text=groups.fixed_text(kind, shown.text, actor),
                  url=shown.url, actor_id=_user_id(actor) if actor is not None else None)
    # Found by its time too: the event of the post as it was shown then, not a later bump's.
    return _find_or_make_event({**fields, "created_at": shown.created_at}, shown.created_at)[0]


def retract(kind: str, recipient, actor, group: str) -> int:
    """Take `actor` out of the recipient's `kind` groups for `group` (every window): unlike,
    unfollow. A group keeps its seq (nothing new happened) and loses one from its count; a group
    left with nobody goes, taking its unread / unseen share of the counts with it. Other tabs get
    the changed item (same id and seq) or its removal. Returns how many groups changed.

    The caller holds whatever it locked first (the post, for unlike); this locks the recipient's
    state row next, as every write does.
    """
    uid = _user_id(recipient)
    with transaction.atomic():
        _lock_states([uid])
        changed, gone = _take_out(NotificationActor.objects.filter(
            actor_id=_user_id(actor), notification__recipient_id=uid, notification__kind=kind,
            notification__dedupe_key__startswith=f"{group}:",
        ))
        if changed or gone:
            _push_changed(uid, changed, gone)
    return len(changed) + len(gone)


def forget_account(user, *, post_refs: Iterable[int], comment_refs: Iterable[int]) -> None:
    """Before an account is deleted: withdraw the notifications about its posts and comments, and
    take it out of every group it is in, so every "Ana and 3 others" stays exact (its member
    rows would go with the account; the counts would not).

    Every state row this touches — the recipients of both, and the account's own, which its
    deletion removes — is locked first, in one ascending sweep, like every write. (The caller has
    locked the account's posts, so nothing new arrives about them meanwhile.)"""
    uid = _user_id(user)
    post_refs, comment_refs = list(post_refs), list(comment_refs)
    about = Q(event__in=_events_about(post_refs, comment_refs))
    memberships = NotificationActor.objects.filter(actor_id=uid)
    recipients = {uid}
    recipients.update(Notification.objects.filter(about).order_by().values_list("recipient_id", flat=True).distinct())
    recipients.update(memberships.values_list("notification__recipient_id", flat=True))
    with transaction.atomic():
        _lock_states(sorted(recipients))
        withdraw(post_refs=post_refs, comment_refs=comment_refs)
        _take_out(memberships)


def _take_out(memberships) -> tuple[list[int], list[int]]:
    """Delete these member rows (the recipients' state rows are locked): their groups lose one
    person each, and those left with nobody are deleted with their share of the counts. The
    events only those members or groups pointed at go too.
    Returns (ids of groups that changed, ids of groups that went)."""
    found = list(memberships.values_list("pk", "notification_id", "event_id"))
    if not found:
        return [], []
    NotificationActor.objects.filter(pk__in=[pk for pk, _, _ in found]).delete()
    ids = sorted({nid for _, nid, _ in found})
    events = {event for _, _, event in found if event is not None}
    empty = Q(pk__in=ids, actor_count__lte=1)
    gone = list(Notification.objects.filter(empty).values_list("pk", flat=True))
    if gone:
        _uncount(Q(pk__in=gone))
        PendingPush.objects.filter(notification_id__in=gone).delete()
        PendingWebPush.objects.filter(notification_id__in=gone).delete()
        events.update(Notification.objects.filter(pk__in=gone).values_list("event_id", flat=True))
        Notification.objects.filter(pk__in=gone).delete()
    changed = [i for i in ids if i not in set(gone)]
    newest = NotificationActor.objects.filter(notification_id=OuterRef("pk")).order_by("-created_at", "-pk")
    Notification.objects.filter(pk__in=changed).update(  # it shows its newest member's event
        actor_count=F("actor_count") - 1, event_id=Coalesce(Subquery(newest.values("event_id")[:1]), F("event_id"))
    )
    _forget_events(events)
    return changed, gone


def _push_changed(uid: int, changed_ids: list[int], gone_ids: list[int]) -> None:
    """After commit, tell the user's tabs about items that changed in place or went."""
    removals.tell_on_commit({uid: gone_ids} if gone_ids else {}, {uid: changed_ids} if changed_ids else {})


def mark_seen(user) -> int:
    """Mark everything seen (the user opened the bell): the seen watermark moves to last_seq, one
    row. Returns the new unseen count (0); other tabs get a `seen` message."""
    uid = _user_id(user)
    with transaction.atomic():
        _lock_states([uid])
        state = NotificationState.objects.get(pk=uid)
        if state.unseen_count or state.seen_seq != state.last_seq:
            NotificationState.objects.filter(pk=uid).update(seen_seq=state.last_seq, unseen_count=0)
            delivery.publish_on_commit(uid, envelope.seen_message(last_seq=state.last_seq, unseen_count=0))
    return 0


def preferences(user) -> dict:
    """What the user is told about, where: muted kinds and posts (nowhere), the kinds each other
    channel carries (never a muted one), and how often the email digest goes out."""
    uid = _user_id(user)
    state = NotificationState.of(uid)
    return {
        "muted_kinds": state.muted_kind_list,
        "muted_posts": list(MutedPost.objects.filter(user_id=uid).order_by("post_ref").values_list("post_ref", flat=True)),
        "channels": {channel: channels.kinds_on(state, channel) for channel in channels.CHANNELS},
        "email_digest": state.email_digest,
    }


def set_preferences(user, *, muted_kinds: list[str] | None = None, muted_posts: list[int] | None = None,
                    channels_on: dict[str, list[str]] | None = None, email_digest: str | None = None) -> dict:
    """Replace the fields given (validated by the caller): muted kinds and / or posts, the kinds
    on for each channel named in `channels_on`, the digest's cadence. Takes effect for every
    notification written after the commit; what is stored stays.

    A channel's list names the kinds it carries; a muted kind in it stays off everywhere (muting
    wins), and turning the mute off later brings back the channel setting the user chose."""
    uid = _user_id(user)
    changes = {}
    if muted_kinds is not None:
        changes["muted_kinds"] = channels.join(muted_kinds)
    for channel, kinds in (channels_on or {}).items():
        changes[channels.OFF_FIELD[channel]] = channels.off_for(channel, kinds)
    if email_digest is not None:
        changes["email_digest"] = email_digest
    with transaction.atomic():
        _lock_states([uid])
        if changes:
            NotificationState.objects.filter(pk=uid).update(**changes)
        if muted_posts is not None:
            MutedPost.objects.filter(user_id=uid).exclude(post_ref__in=muted_posts).delete()
            MutedPost.objects.bulk_create([MutedPost(user_id=uid, post_ref=p) for p in set(muted_posts)],
                                          ignore_conflicts=True)
    return preferences(uid)


def mute_post(user, post_ref: int, muted: bool = True) -> bool:
    """Mute (or unmute) notifications about one post; returns whether anything changed."""
    uid = _user_id(user)
    if muted:
        return MutedPost.objects.get_or_create(user_id=uid, post_ref=post_ref)[1]
    deleted, _ = MutedPost.objects.filter(user_id=uid, post_ref=post_ref).delete()
    return bool(deleted)


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
        delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=unread, ids=[notification_id],
                                        unseen_count=state.unseen_count)
    return unread


def mark_unread(user, notification_id: int) -> int:
    """Mark one of the user's notifications unread again ("keep as new"); returns the new unread
    count. Idempotent: one that is already unread changes nothing.

    Above the read watermark that is its own mark cleared. At or below it the watermark says it is
    read, so the watermark comes down to just below it, and whatever it covered above that point
    and was not read by itself keeps being read with its own `read_at`: one range UPDATE on the
    (recipient, seq) index, proportional to how far back the item is (a page or two in practice),
    where the alternative, a second "unread on purpose" flag, would add a term to every unread
    test in the app. Either way the item flips once and the count gains exactly one.

    Raises Notification.DoesNotExist when it is not this user's (callers answer 404).
    """
    uid = _user_id(user)
    with transaction.atomic():
        _lock_states([uid])
        state = NotificationState.objects.get(pk=uid)
        item = Notification.objects.filter(pk=notification_id, recipient_id=uid).values_list("seq", "read_at").first()
        if item is None:
            raise Notification.DoesNotExist(notification_id)
        seq, read_at = item
        if seq > state.read_seq and read_at is None:
            return state.unread_count
        watermark = state.read_seq
        if seq <= state.read_seq:
            watermark = seq - 1
            Notification.objects.filter(
                recipient_id=uid, seq__gt=seq, seq__lte=state.read_seq, read_at__isnull=True
            ).update(read_at=timezone.now())
        Notification.objects.filter(pk=notification_id).update(read_at=None)
        unread = state.unread_count + 1
        NotificationState.objects.filter(pk=uid).update(unread_count=unread, read_seq=watermark)
        delivery.publish_on_commit(uid, envelope.unread_message(
            last_seq=state.last_seq, unread_count=unread, ids=[notification_id], unseen_count=state.unseen_count))
    return unread


def open_post(user, post_ref: int) -> list[int]:
    """The user opened a post: what they were told about it (comments, likes, mentions, replies on
    it, the "new posts" item while it shows this post) is read, and everything is seen, as when
    they open each notification and the bell. Returns the ids marked read.

    The state row is locked first (as every write's); one UPDATE … RETURNING marks the unread
    items of the post, so the unread count drops by exactly what it returned, and one UPDATE of the
    state row moves the seen watermark. Other tabs get a `read` and a `seen` message after commit.
    """
    uid = _user_id(user)
    notification, event = table(Notification), table(NotificationEvent)
    with transaction.atomic():
        _lock_states([uid])
        state = NotificationState.objects.get(pk=uid)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {notification} SET read_at = %s WHERE recipient_id = %s"
                f" AND event_id IN (SELECT e.id FROM {event} e WHERE e.post_ref = %s)"
                f" AND read_at IS NULL AND seq > %s RETURNING id",
                [connection.ops.adapt_datetimefield_value(timezone.now()), uid, post_ref, state.read_seq],
            )
            ids = sorted(row[0] for row in cursor.fetchall())
        unseen = state.unseen_count or state.seen_seq != state.last_seq
        if not ids and not unseen:
            return []
        unread = state.unread_count - len(ids)
        NotificationState.objects.filter(pk=uid).update(unread_count=unread, seen_seq=state.last_seq, unseen_count=0)
        if ids:
            delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=unread, ids=ids,
                                            unseen_count=0)
        if unseen:
            delivery.publish_on_commit(uid, envelope.seen_message(last_seq=state.last_seq, unseen_count=0))
    return ids


def mark_all_read(user) -> int:
    """Mark all of the user's notifications read by moving the read watermark: one row, whatever
    the backlog. Returns how many were unread."""
    uid = _user_id(user)
    with transaction.atomic():
        _lock_states([uid])
        state = NotificationState.objects.get(pk=uid)
        NotificationState.objects.filter(pk=uid).update(read_seq=state.last_seq, unread_count=0)
        delivery.publish_read_on_commit(uid, last_seq=state.last_seq, unread_count=0, ids=None,
                                        unseen_count=state.unseen_count)
    return state.unread_count


def mark_read_where(condition: Q) -> int:
    """Mark every unread notification matching condition read, whoever it belongs to (admin)."""
    condition = Q(pk__in=Notification.objects.filter(condition).unread().values("pk"))
    with transaction.atomic():
        user_ids = _uncount(condition, unseen=False)
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
