"""Pushing stored notifications, and recording what happened to each push.

Every stored notification comes with a PendingPush row (the outbox), written in the same
transaction. The push itself runs after the commit (a rolled-back comment must not light anyone's
bell) and outside it (a slow broker must not hold database locks):
- succeeded: the PendingPush rows of the batch go, in one DELETE;
- may pass (broker down, throttled, timed out, skipped by the breaker): they stay, due again after
  a backoff that starts at half a second (0.5 s, 1 s, 2 s, 4 s, … up to an hour), and are handed
  at once to the task queue (`retry_owed`, deferred to that time: the database queue's worker,
  or an asynchronous Lambda invocation), so a push that one slow reply or a broker hiccup kept
  from going out is on screen about a second later. Past the first few quick attempts the
  scheduled `manage.py deliver_pending` owns them;
- can never succeed (payload too large, bad topic): they stay with no due time, as the record of
  the failure;
- never attempted (the process died between commit and push): the row was written due a few
  seconds ahead (IN_FLIGHT_LEASE), so deliver_pending picks it up then.

A push made on behalf of a request is `urgent`: one attempt with a short timeout (see
publishers), so a wedged broker costs a request at most a few hundred milliseconds, and nothing
while the breaker is open; everything that fails goes to the retry queue.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from . import envelope, groups
from .models import Notification, NotificationState, PendingPush
from .oncommit import after_commit
from .push.publisher import PublishError, get_publisher
from .push.batch import publish_all
from .sql import among, table
from .taskqueue import background, enqueue_retry, in_task
from .topics import user_topic

log = logging.getLogger(__name__)

# Retries give up (mark failed) after this many attempts. The wait between attempts doubles
# from FIRST_RETRY up to MAX_DELAY: 0.5 s, 1 s, 2 s, … so a hiccup costs about a second, and the
# last attempts come hours after the event.
MAX_ATTEMPTS = 18
FIRST_RETRY = timedelta(seconds=0.5)
MAX_DELAY = timedelta(hours=1)
# Attempts due within this long of the previous one go through the task queue (retry_owed) at
# their due time; later ones are left to deliver_pending's schedule (every minute on Lambda).
QUICK_RETRY_WITHIN = timedelta(seconds=30)
# A new row is due this long after its commit: the in-process push goes first, and one lost with
# its process (killed between commit and push) is retried by deliver_pending after that.
IN_FLIGHT_LEASE = timedelta(seconds=10)
# How long a claimed batch belongs to the run that claimed it (a run killed midway gives its rows
# back after this; one that overruns it at worst pushes a message twice, which tabs ignore by seq).
CLAIM_LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class Outgoing:
    """What one push needs, built from memory right after a write (no query between the commit
    and the publish) or loaded back by deliver() for a retry."""

    pk: int
    recipient_id: int
    seq: int
    kind: str
    actor: object
    text: str
    url: str
    created_at: datetime
    unread_count: int
    unseen_count: int = 0
    actor_count: int = 1
    actor_list: tuple = ()  # up to 3 most recent actors (envelope.actor_dict), newest first
    read: bool = False


def backoff(attempts: int) -> timedelta:
    """Wait before attempt number attempts+1."""
    return min(MAX_DELAY, FIRST_RETRY * (2 ** min(max(attempts - 1, 0), 32)))


def deliver_on_commit(items: list[Outgoing], *, urgent: bool = True) -> None:
    """Push just-stored notifications once the transaction commits.

    Urgent unless called from background work (a fan-out task pushes with the patient client).
    """
    if items:
        after_commit(push, items, urgent and not in_task())


def load(notification_ids: list[int]) -> list[Outgoing]:
    """These notifications as they are now, with their recipients' current counts and their
    groups' most recent actors (for a retry, or an item that changed in place)."""
    def state(column):
        return Subquery(NotificationState.objects.filter(pk=OuterRef("recipient_id")).values(column)[:1])

    rows = list(
        Notification.objects.filter(pk__in=notification_ids)
        .select_related("event__actor")
        .annotate(unread_now=state("unread_count"), unseen_now=state("unseen_count"), read_seq_now=state("read_seq"))
        .order_by("pk")
    )
    recent = groups.recent_actors([n.pk for n in rows if groups.needs_members(n)])
    return [
        Outgoing(pk=n.pk, recipient_id=n.recipient_id, seq=n.seq, kind=n.kind, actor=n.actor, text=n.text,
                 url=n.url, created_at=n.created_at, unread_count=n.unread_now or 0, unseen_count=n.unseen_now or 0,
                 actor_count=n.actor_count, actor_list=tuple(recent.get(n.pk) or [envelope.actor_dict(n.actor)]),
                 read=n.read_at is not None or n.seq <= (n.read_seq_now or 0))
        for n in rows
    ]


def deliver(notification_ids: list[int]) -> dict[str, int]:
    """Publish those of these notifications whose push is still owed; see push()."""
    owed = PendingPush.objects.filter(pk__in=notification_ids, due_at__isnull=False).values_list("pk", flat=True)
    return push(load(list(owed)), urgent=False, retry=True)


def item_message(item: Outgoing) -> dict:
    return envelope.notification_message(item, unread_count=item.unread_count, unseen_count=item.unseen_count)


# The message's keys that differ between the recipients of one event (envelope.notification_message
# puts them first and last, so the middle is the same bytes for all of them).
_OWN_HEAD, _OWN_TAIL = ("v", "type", "seq", "id"), ("read", "unread_count", "unseen_count")


def encode_items(items: list[Outgoing]) -> list[bytes]:
    """Each item's message, encoded: the same bytes as envelope.encode(item_message(item)), with
    the part that items of one event share (what happened, who, the text, where; items that hold
    the same actors tuple, as a fan-out's do) encoded once, and each recipient's own numbers
    spliced around it. A fan-out chunk's 500 messages cost one JSON encoding, not 500."""
    shared: dict[tuple, bytes] = {}
    out = []
    for item in items:
        key = (id(item.actor_list), item.kind, item.text, item.url, item.created_at, item.actor_count)
        middle = shared.get(key)
        if middle is None:
            message = item_message(item)
            middle = shared[key] = envelope.encode(
                {k: v for k, v in message.items() if k not in _OWN_HEAD and k not in _OWN_TAIL})[1:-1]
        out.append(b'{"v":%d,"type":"notification","seq":%d,"id":%d,%s,"read":%s,"unread_count":%d,"unseen_count":%d}' % (
            envelope.ENVELOPE_VERSION, item.seq, item.pk, middle, b"true" if item.read else b"false",
            item.unread_count, item.unseen_count))
    return out


def push(items: list[Outgoing], urgent: bool = False, retry: bool = False) -> dict[str, int]:
    """Publish each notification to its recipient's topic and record each outcome.

    The batch is published side by side, within the process's rate limit (notifier.push.batch).
    When a push fails in a way that may pass (broker down), the rest of the batch is not
    attempted: they would most likely fail the same way, each after its own timeouts, and
    deliver_pending retries them all later. Throttled pushes are slowed down and retried in the
    batch. A `retry` of owed pushes tries even while the breaker is open. Returns counts by
    outcome.
    """
    try:
        publisher = get_publisher()
    except PublishError as exc:  # e.g. the data endpoint could not be discovered: try later
        log.warning("no publisher: %s", exc)
        _record([], {n.pk: str(exc)[:300] for n in items}, {})
        return {"delivered": 0, "pending": len(items), "failed": 0}
    messages = [(item.pk, user_topic(item.recipient_id), body) for item, body in zip(items, encode_items(items))]
    outcome = publish_all(publisher, messages, urgent=urgent, probe=retry)
    if outcome.failed:
        log.warning("%d push(es) failed for good, e.g. notification %s: %s", len(outcome.failed),
                    *next(iter(outcome.failed.items())))
    if outcome.throttled:
        log.info("the broker throttled %d push(es); the publish rate was lowered", outcome.throttled)
    _record(outcome.delivered, outcome.retry, outcome.failed)
    if retry and outcome.delivered and not outcome.retry:
        bring_forward()
    return {"delivered": len(outcome.delivered), "pending": len(outcome.retry), "failed": len(outcome.failed)}


def bring_forward(limit: int = 5000) -> int:
    """A retry just went through: whatever else is owed after failing is due now, not at the end
    of its own backoff (up to an hour) — the broker it was waiting for is back. They go to the
    queue at once (and deliver_pending finds them too), so an outage's pushes follow its end within
    about a second. Returns how many rows were brought forward."""
    now = timezone.now()
    ids = list(PendingPush.objects.filter(due_at__gt=now + FIRST_RETRY, attempts__gt=0)
               .order_by("due_at").values_list("pk", flat=True)[:limit])
    if ids:
        PendingPush.objects.filter(pk__in=ids, due_at__gt=now).update(due_at=now)
        log.info("the broker answers again: %d owed push(es) brought forward", len(ids))
        for start in range(0, len(ids), 500):
            _retry_soon(ids[start:start + 500], now)
    return len(ids)


def probe_owed() -> dict[str, int]:
    """When pushes are owed but none is due, try the oldest owed one now: a quiet system learns
    that the broker is back within one deliver_pending loop, and its success brings the rest
    forward (see bring_forward)."""
    with transaction.atomic():
        ids = list(PendingPush.objects.filter(due_at__isnull=False, attempts__gt=0)
                   .select_for_update(skip_locked=True).order_by("due_at").values_list("pk", flat=True)[:1])
        PendingPush.objects.filter(pk__in=ids).update(due_at=timezone.now())
    return deliver(ids) if ids else {"delivered": 0, "pending": 0, "failed": 0}


def _record(delivered: list[int], retry: dict[int, str], failed: dict[int, str]) -> None:
    now = timezone.now()
    if delivered:  # one statement for the batch, the ids as one parameter
        cond, params = among("notification_id", delivered)
        own = not connection.in_atomic_block  # inside a caller's transaction its commit stays as it is
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql" and own:
                # This commit need not wait for its WAL flush: were it lost in a crash, the rows
                # would come back and deliver_pending would push them again, a duplicate that
                # clients drop (same id and seq). A fan-out paid one flush per chunk for it.
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute(f"DELETE FROM {table(PendingPush)} WHERE {cond}", params)
    attempted = dict(attempts=F("attempts") + 1, last_attempt_at=now)
    for error in set(failed.values()):
        pks = [pk for pk, e in failed.items() if e == error]
        PendingPush.objects.filter(pk__in=pks).update(due_at=None, last_error=error, **attempted)
    if not retry:
        return
    # Rows that will be retried: grouped by attempt count, since the backoff depends on it.
    by_attempts: dict[tuple[int, str], list[int]] = {}
    for pk, attempts in PendingPush.objects.filter(pk__in=list(retry)).values_list("pk", "attempts"):
        by_attempts.setdefault((attempts + 1, retry[pk]), []).append(pk)
    quick, first_due = [], None
    for (attempts, error), pks in by_attempts.items():
        gave_up = attempts >= MAX_ATTEMPTS
        due = None if gave_up else now + backoff(attempts)
        PendingPush.objects.filter(pk__in=pks).update(
            last_error=(f"gave up after {attempts} attempts: " if gave_up else "") + error,
            due_at=due,
            **attempted,
        )
        if due is not None and backoff(attempts) <= QUICK_RETRY_WITHIN:
            quick += pks
            first_due = due if first_due is None else min(first_due, due)
    if quick:
        _retry_soon(sorted(quick), first_due)


def _retry_soon(ids: list[int], due) -> None:
    enqueue_retry(retry_owed, ids, due, "owed push(es)")


@background
def retry_owed(ids: list[int]) -> dict[str, int]:
    """The task queue's quick retry of owed pushes: those of `ids` still owed and due now (a
    deliver_pending run may have taken some) are pushed again; what still fails is scheduled
    again by push()."""
    claimed = claim_due(len(ids), among=ids)
    return deliver(claimed) if claimed else {"delivered": 0, "pending": 0, "failed": 0}


def due_for_retry(now=None):
    """Owed pushes whose next attempt is due, oldest first."""
    now = now or timezone.now()
    return PendingPush.objects.filter(due_at__lte=now).order_by("due_at")


def claim_due(limit: int, among: list[int] | None = None) -> list[int]:
    """Take up to `limit` due rows (of `among`, if given) and push their next attempt out by a
    lease, so that two runs that overlap (deliver_pending and a quick retry task, or a slow run
    and the next scheduled one) do not push the same rows twice. On PostgreSQL rows locked by the
    other run are skipped."""
    due = due_for_retry() if among is None else due_for_retry().filter(pk__in=among)
    with transaction.atomic():
        ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        PendingPush.objects.filter(pk__in=ids).update(due_at=timezone.now() + CLAIM_LEASE)
    return ids


def publish_read_on_commit(user_id: int, *, last_seq: int, unread_count: int, ids: list[int] | None,
                           unseen_count: int | None = None) -> None:
    """After commit, tell the user's open tabs that notifications were read (best effort)."""
    publish_on_commit(user_id, envelope.read_message(last_seq=last_seq, unread_count=unread_count, ids=ids,
                                                      unseen_count=unseen_count))


def publish_on_commit(user_id: int, message: dict) -> None:
    """After commit, send the user's open tabs a message that is not stored (best effort: read,
    seen, an item changed in place or removed)."""
    broadcast_on_commit(user_topic(user_id), message)


def broadcast_on_commit(topic: str, message: dict) -> None:
    """After commit, publish a message that is not stored and not retried (best effort): a user's
    read / seen / changed-item messages, a post's public activity. A tab that misses one corrects
    itself from the API on reconnect; an open post page shows the rest, and a reload shows all."""
    after_commit(_publish_best_effort, topic, message)


def _publish_best_effort(topic: str, message: dict) -> None:
    # Through publish_all all the same: it counts against the rate and respects the breaker.
    try:
        outcome = publish_all(get_publisher(), [(topic, topic, envelope.encode(message))], urgent=True)
    except PublishError as exc:
        log.info("push of a %s message to %s failed: %s", message.get("type"), topic, exc)
    else:
        if not outcome.delivered:
            error = {**outcome.retry, **outcome.failed}.get(topic)
            log.info("push of a %s message to %s failed: %s", message.get("type"), topic, error)
