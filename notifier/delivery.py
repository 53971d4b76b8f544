"""Pushing stored notifications, and recording what happened to each push.

Pushes run after the transaction commits (a rolled-back comment must not light anyone's bell),
outside it (a slow broker must not hold database locks). A push that fails stays `pending` with
the error recorded, for `manage.py deliver_pending` to retry; one that can never succeed is
marked `failed`.
"""
import logging
from functools import partial

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import envelope
from .models import Delivery, Notification
from .publishers import PublishError, get_publisher
from .topics import user_topic

log = logging.getLogger(__name__)


def deliver_on_commit(notification_ids: list[int]) -> None:
    if notification_ids:
        transaction.on_commit(partial(deliver, notification_ids), robust=True)


def deliver(notification_ids: list[int]) -> dict[str, int]:
    """Publish these notifications (those still pending) and record each outcome.

    Returns counts by outcome, e.g. {"delivered": 3, "pending": 1, "failed": 0}.
    """
    publisher = get_publisher()
    pending = (
        Notification.objects.filter(pk__in=notification_ids, delivery=Delivery.PENDING)
        .select_related("actor", "recipient__notification_state")
        .order_by("pk")
    )
    delivered, retry, failed = [], {}, {}
    for notification in pending:
        message = envelope.notification_message(
            notification, unread_count=notification.recipient.notification_state.unread_count
        )
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
        Notification.objects.filter(pk__in=delivered).update(delivery=Delivery.DELIVERED, last_error="", **attempted)
    # Errors differ per row; the common case (broker down) is one message for all of them.
    for state, errors in ((Delivery.PENDING, retry), (Delivery.FAILED, failed)):
        by_message: dict[str, list[int]] = {}
        for pk, error in errors.items():
            by_message.setdefault(error, []).append(pk)
        for error, pks in by_message.items():
            Notification.objects.filter(pk__in=pks).update(delivery=state, last_error=error, **attempted)


def publish_read_on_commit(user_id: int, *, last_seq: int, unread_count: int, ids: list[int] | None) -> None:
    """After commit, tell the user's open tabs that notifications were read (best effort)."""
    message = envelope.read_message(last_seq=last_seq, unread_count=unread_count, ids=ids)
    transaction.on_commit(partial(_publish_best_effort, user_id, message), robust=True)


def _publish_best_effort(user_id: int, message: dict) -> None:
    # Not stored and not retried: a tab that misses it corrects its badge from the API on reconnect.
    try:
        get_publisher().publish(user_topic(user_id), envelope.encode(message))
    except PublishError as exc:
        log.info("read-state push to user %s failed: %s", user_id, exc)
