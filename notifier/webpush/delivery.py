"""Sending owed Web Pushes (PendingWebPush rows) and recording what happened to each.

The rows are written in the notification's own transaction (notifier.services), one per device
whose user wants the kind on Web Push. Then, like the live push (notifier.delivery):
- a request's notifications are sent right after its commit, in the request's process, with a
  short timeout (WEB_PUSH_URGENT_TIMEOUT): a user's few devices, side by side;
- background work (a follower fan-out's chunks) enqueues `send_owed` tasks in its transaction
  (on the database queue they exist exactly when the rows do), so any worker sends them and the
  chunk's live pushes never wait on a push service;
- `manage.py deliver_pending` (sweep) sends what is due: rows whose first send was lost with its
  process (written due IN_FLIGHT_LEASE ahead), and retries after a 429 / 5xx / network error;
  a retry due within seconds also goes to the task queue for that time (`send_owed`, deferred).

Claiming: a sender raises a row's `attempts` and pushes `due_at` out by CLAIM_LEASE in one short
transaction (rows another sender holds are skipped), so two senders never take the same attempt.
A first send (from the commit or its task) claims rows not yet tried (attempts = 0), the sweep
rows that are due.

Outcomes: accepted (200/201/202) deletes the row, unless it was owed again meanwhile (a bump
reset attempts: that newer push is still owed); 404/410 deletes the subscription and every push
owed to it; 429/5xx and network errors back off (delivery.backoff, or the service's Retry-After
when later) up to MAX_ATTEMPTS; 413 and other 4xx stay as failed (due_at null, last_error).
"""
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .. import delivery as live
from ..models import PendingWebPush, WebPushSubscription
from ..oncommit import after_commit
from ..taskqueue import background, enqueue, enqueue_retry, in_task
from . import payload

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
CLAIM_LEASE = timedelta(seconds=60)
IN_FLIGHT_LEASE = timedelta(seconds=15)
TASK_CHUNK = 500  # owed rows per send_owed task

_executor: ThreadPoolExecutor | None = None
_executor_size = 0


def owe_on_commit(row_ids: list[int]) -> None:
    """Just-written owed rows (in the current transaction): sent after the commit by this request,
    or by background tasks enqueued now when this is background work."""
    if not row_ids:
        return
    if in_task():
        for start in range(0, len(row_ids), TASK_CHUNK):
            enqueue(send_owed, row_ids[start:start + TASK_CHUNK])
    else:
        after_commit(send_first, row_ids, True)


def send_first(row_ids: list[int], urgent: bool = False) -> dict[str, int]:
    """First attempt of these rows (those not tried yet, or due)."""
    return deliver(claim(among=row_ids, first=True), urgent=urgent)


@background
def send_owed(row_ids: list[int]) -> dict[str, int]:
    """A background chunk of a fan-out's Web Pushes."""
    return send_first(row_ids)


def sweep(batch: int = 500, max_batches: int = 20) -> dict[str, int]:
    """deliver_pending's part: send what is due, a batch at a time, oldest first."""
    totals = _zero()
    for _ in range(max_batches):
        claimed = claim(limit=batch)
        if not claimed:
            break
        for key, value in deliver(claimed).items():
            totals[key] += value
        if len(claimed) < batch:
            break
    return totals


def claim(*, among: list[int] | None = None, first: bool = False, limit: int | None = None) -> list[tuple]:
    """Take rows for one attempt: [(row id, notification id, subscription id, attempts)], with
    `attempts` already raised and `due_at` a lease ahead."""
    now = timezone.now()
    rows = PendingWebPush.objects.filter(due_at__isnull=False)
    if among is not None:
        rows = rows.filter(pk__in=among)
    rows = rows.filter(Q(attempts=0) | Q(due_at__lte=now)) if first else rows.filter(due_at__lte=now)
    with transaction.atomic():
        taken = list(rows.select_for_update(skip_locked=True).order_by("due_at", "pk")
                     .values_list("pk", "notification_id", "subscription_id", "attempts")[:limit])
        if taken:
            PendingWebPush.objects.filter(pk__in=[row[0] for row in taken]).update(
                attempts=F("attempts") + 1, last_attempt_at=now, due_at=now + CLAIM_LEASE)
    return [(pk, nid, sid, attempts + 1) for pk, nid, sid, attempts in taken]


def deliver(claimed: list[tuple], *, urgent: bool = False) -> dict[str, int]:
    """Send claimed rows side by side and record each outcome."""
    if not claimed:
        return _zero()
    from . import sender

    subs = {s.pk: s for s in WebPushSubscription.objects.filter(pk__in={row[2] for row in claimed})}
    items = {item.pk: item for item in live.load(sorted({row[1] for row in claimed}))}
    orphans, jobs, bodies, unsendable = [], [], {}, []
    for row in claimed:
        pk, nid, sid, attempts = row
        sub, item = subs.get(sid), items.get(nid)
        if sub is None or item is None:  # the device or the notification went meanwhile
            orphans.append(pk)
            continue
        if nid not in bodies:
            try:
                bodies[nid] = payload.encode(payload.message(item))
            except ValueError as exc:
                bodies[nid] = sender.Result("failed", error=str(exc)[:300])
        if isinstance(bodies[nid], sender.Result):
            unsendable.append((row, bodies[nid]))
            continue
        ttl, urgency = payload.ttl_and_urgency(item.kind)
        jobs.append((row, sub.endpoint, sub.p256dh, sub.auth, bodies[nid], ttl, urgency, f"n{nid}"))
    timeout = settings.WEB_PUSH_URGENT_TIMEOUT if urgent else settings.WEB_PUSH_TIMEOUT

    def one(job):
        row, endpoint, p256dh, auth, body, ttl, urgency, topic = job
        try:
            return row, sender.send(endpoint, p256dh, auth, body, ttl=ttl, urgency=urgency, topic=topic,
                                    timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - recorded and retried, never a failed request or task
            log.exception("Web Push to subscription %s failed", row[2])
            return row, sender.Result("retry", error=f"{type(exc).__name__}: {exc}"[:300])

    results = list(_pool().map(one, jobs)) if len(jobs) > 1 else [one(job) for job in jobs]
    results += unsendable
    if orphans:
        PendingWebPush.objects.filter(pk__in=orphans).delete()
    return _record(results)


def _pool() -> ThreadPoolExecutor:
    global _executor, _executor_size
    size = settings.WEB_PUSH_CONCURRENCY
    if _executor is None or _executor_size != size:
        _executor, _executor_size = ThreadPoolExecutor(size, thread_name_prefix="webpush"), size
    return _executor


def _record(results) -> dict[str, int]:
    now = timezone.now()
    counts = _zero()
    delivered = defaultdict(list)  # attempts -> row ids
    gone_subs = set()
    quick, first_due = [], None
    for (pk, _nid, sid, attempts), result in results:
        if result.outcome == "delivered":
            delivered[attempts].append(pk)
            counts["delivered"] += 1
        elif result.outcome == "gone":
            gone_subs.add(sid)
            counts["gone"] += 1
        elif result.outcome == "failed":
            PendingWebPush.objects.filter(pk=pk).update(due_at=None, last_error=result.error)
            counts["failed"] += 1
        else:
            gave_up = attempts >= MAX_ATTEMPTS
            wait = live.backoff(attempts)
            if result.retry_after is not None:
                wait = max(wait, timedelta(seconds=min(result.retry_after, 86400)))
            PendingWebPush.objects.filter(pk=pk, attempts=attempts).update(
                due_at=None if gave_up else now + wait,
                last_error=(f"gave up after {attempts} attempts: " if gave_up else "") + result.error)
            counts["failed" if gave_up else "pending"] += 1
            if not gave_up and wait <= live.QUICK_RETRY_WITHIN:
                quick.append(pk)
                first_due = now + wait if first_due is None else min(first_due, now + wait)
    for attempts, pks in delivered.items():
        # Not a row owed again since it was claimed (a bump set attempts back to 0).
        PendingWebPush.objects.filter(pk__in=pks, attempts=attempts).delete()
    if gone_subs:
        log.info("%d Web Push subscription(s) ended (404/410): deleted", len(gone_subs))
        WebPushSubscription.objects.filter(pk__in=gone_subs).delete()
    if quick:
        _retry_soon(quick, first_due)
    return counts


def _retry_soon(ids: list[int], due) -> None:
    """A retry due within seconds goes to the task queue for that time, as the live push's do."""
    enqueue_retry(send_owed, ids, due, "Web Push(es)")


def _zero() -> dict[str, int]:
    return {"delivered": 0, "pending": 0, "failed": 0, "gone": 0}
