"""Pushing stored notifications, and recording what happened to each push.

Pushes run after the transaction commits (a rolled-back comment must not light anyone's bell),
outside it (a slow broker must not hold database locks). A push that fails stays `pending` with
the error recorded, for `manage.py deliver_pending` to retry; one that can never succeed is
marked `failed`.
"""
import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import background, envelope
from .models import Delivery, Notification
from .publishers import PublishError, get_publisher
from .topics import user_topic

log = logging.getLogger(__name__)

# deliver_pending gives up (marks failed) after this many attempts; the wait between attempts
# doubles from BASE_DELAY up to MAX_DELAY, so the last retries happen hours after the event.
MAX_ATTEMPTS = 12
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)
# A row this old that was never attempted lost its after-commit push (process died): retry it.
ORPHAN_AFTER = timedelta(minutes=1)


def backoff(attempts: int) -> timedelta:
    """Wait before attempt number attempts+1."""
    return min(MAX_DELAY, BASE_DELAY * (2 ** max(attempts - 1, 0)))


def deliver_on_commit(notifications: list[Notification]) -> None:
    """Push just-created notifications once the transaction commits.

    The rows are pushed from memory (with the unread count notify() computed under lock): no query
    stands between the commit and the publish.
    """
    if notifications:
        background.after_commit(push, notifications)


def deliver(notification_ids: list[int]) -> dict[str, int]:
    """Publish those of these notifications that are still pending; see push()."""
    pending = (
        Notification.objects.filter(pk__in=notification_ids, delivery=Delivery.PENDING)
        .select_related("actor", "recipient__notification_state")
        .order_by("pk")
    )
    for notification in pending:
        notification.unread_count_after = notification.recipient.notification_state.unread_count
    return push(list(pending))


def push(notifications: list[Notification]) -> dict[str, int]:
    """Publish each notification to its recipient's topic and record each outcome.

    When a push fails in a way that may pass (broker down, throttled), the rest of the batch is not
    attempted: they would most likely fail the same way, each after its own timeouts, and
    deliver_pending retries them all later. Returns counts by outcome.
    """
    delivered, retry, failed = [], {}, {}
    try:
        publisher = get_publisher()
    except PublishError as exc:  # e.g. the data endpoint could not be discovered: try later
        log.warning("no publisher: %s", exc)
        _record([], {n.pk: str(exc)[:300] for n in notifications}, {})
        return {"delivered": 0, "pending": len(notifications), "failed": 0}
    for notification in notifications:
        if retry:
            retry[notification.pk] = "not attempted: an earlier push in the batch failed"
            continue
        message = envelope.notification_message(notification, unread_count=notification.unread_count_after)
        try:
            publisher.publish(user_topic(notification.recipient_id), envelope.encode(message))
        except PublishError as exc:
            (failed if exc.permanent else retry)[notification.pk] = str(exc)[:300]
            log.warning("push of notification %s failed (%s): %s", notification.pk,
                        "permanent" if exc.permanent else "will retry", exc)
        else:
            delivered.append(notification.pk)
    _record(delivered, retry, failed)
    return {"delivered": len(delivered), "pending": len(retry), "failed": len(failed)}


def _record(delivered: list[int], retry: dict[int, str], failed: dict[int, str]) -> None:
    now = timezone.now()
    attempted = dict(attempts=F("attempts") + 1, last_attempt_at=now)
    if delivered:
        Notification.objects.filter(pk__in=delivered).update(
            delivery=Delivery.DELIVERED, last_error="", next_attempt_at=None, **attempted
        )
    for pk, error in failed.items():
        Notification.objects.filter(pk=pk).update(
            delivery=Delivery.FAILED, last_error=error, next_attempt_at=None, **attempted
        )
    # Rows that will be retried: grouped by attempt count, since the backoff depends on it.
    by_attempts: dict[tuple[int, str], list[int]] = {}
    for pk, attempts in Notification.objects.filter(pk__in=list(retry)).values_list("pk", "attempts"):
        by_attempts.setdefault((attempts + 1, retry[pk]), []).append(pk)
    for (attempts, error), pks in by_attempts.items():
        gave_up = attempts >= MAX_ATTEMPTS
        Notification.objects.filter(pk__in=pks).update(
            delivery=Delivery.FAILED if gave_up else Delivery.PENDING,
            last_error=(f"gave up after {attempts} attempts: " if gave_up else "") + error,
            next_attempt_at=None if gave_up else now + backoff(attempts),
            **attempted,
        )


def due_for_retry(now=None):
    """Pending notifications whose next attempt is due, oldest first."""
    now = now or timezone.now()
    return Notification.objects.filter(
        Q(attempts__gt=0, next_attempt_at__lte=now) | Q(attempts=0, created_at__lte=now - ORPHAN_AFTER),
        delivery=Delivery.PENDING,
    ).order_by("pk")


def claim_due(limit: int) -> list[int]:
    """Take up to `limit` due rows and push their next attempt out by a lease, so that two
    deliver_pending runs that overlap (a slow run and the next scheduled one) do not push the same
    rows twice. On PostgreSQL rows locked by the other run are skipped."""
    with transaction.atomic():
        ids = list(due_for_retry().select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        Notification.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    return ids


def publish_read_on_commit(user_id: int, *, last_seq: int, unread_count: int, ids: list[int] | None) -> None:
    """After commit, tell the user's open tabs that notifications were read (best effort)."""
    message = envelope.read_message(last_seq=last_seq, unread_count=unread_count, ids=ids)
    background.after_commit(_publish_best_effort, user_id, message)


def _publish_best_effort(user_id: int, message: dict) -> None:
    # Not stored and not retried: a tab that misses it corrects its badge from the API on reconnect.
    try:
        get_publisher().publish(user_topic(user_id), envelope.encode(message))
    except PublishError as exc:
        log.info("read-state push to user %s failed: %s", user_id, exc)
